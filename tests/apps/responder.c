/*
 * responder.c - a libfcgi FastCGI responder for txfastcgi's tests.
 *
 * One binary serves every test; the query string chooses the behaviour.
 * Options are '&'-separated; a name may appear with or without "=value".
 *
 *   (nothing)     "Content-Type: text/plain", body "Hello, world\n".
 *   size=N        a body of exactly N bytes (0 <= N <= 1 GiB) with
 *                 Content-Length, written in 64 KiB FCGX_PutStr calls.
 *                 Byte k of the body is PATTERN[k % 65536], where
 *                 PATTERN[i] = '\n' if i % 64 == 63 else 'a' + (i % 26)
 *                 (the same pattern as bench/apps/hello.c; see
 *                 tests/peers.py responderPattern()).
 *   echo          the body is the whole request body (FCGX stdin).
 *   env           the body is every param as "NAME=VALUE\n", sorted by
 *                 NAME (then VALUE), byte-wise.
 *   stderr=TEXT   TEXT (as is, no URL decoding) plus "\n" is written to the
 *                 FCGX error stream (FCGI_STDERR) before answering.
 *   push=MS       body "part1\n", FCGX_FFlush, sleep MS ms, "part2\n"
 *                 (no Content-Length).
 *   sleep=MS      sleep MS ms before answering.
 *   status=NNN    adds a "Status: NNN" header (the text after NNN, if any,
 *                 is not added; write status=404 not status=404+Not+Found).
 *
 * The whole request body is always read before anything is written, so
 * a request that sends a body stays in sync with the connection.
 *
 * Every response carries:
 *   X-Pid: <pid>
 *   X-Requests: <requests this process has accepted, this one included>
 *   X-Connections: <connections this process has accepted>
 *   X-Body-Length: <request body bytes read>
 *
 * Connection counting.  FCGX_Accept_r first finishes the previous request
 * and keeps its connection (request.ipcFd >= 0 afterwards) only when the
 * web server set FCGI_KEEP_CONN (request.keepConnection); otherwise it
 * closes it and accepts a new one.  When a kept connection is closed by
 * the web server, FCGX_Accept_r notices EOF, closes it and accepts a new
 * connection inside the same call, and the new socket may get the same fd
 * number.  So each worker finishes its request itself (FCGX_Finish_r),
 * notes whether a connection is still open and that connection's identity
 * (fd number plus the socket's inode number, which the kernel never shares
 * between two open sockets and does not reuse soon), and after
 * FCGX_Accept_r counts a new connection when none was open before, or
 * when the fd number or inode differ.
 *
 * Usage:
 *   responder [-t THREADS] [-l ADDRESS] [-b BACKLOG]
 *     -t N  responder threads (default 1).  A web server that keeps
 *           connections open pins one thread per open connection.
 *     -l A  listen on A ("/path.sock" or ":port" / "host:port") instead of
 *           the listening socket on fd 0 (as spawn-fcgi hands it over).
 *     -b N  listen backlog for -l (default 1024).
 *
 * SIGTERM and SIGINT end the process at once; SIGPIPE is ignored.
 *
 * Build: gcc -O2 -Wall -pthread -o responder responder.c -lfcgi
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SMALL_BODY "Hello, world\n"
#define CHUNK 65536
#define MAX_SIZE (1024L * 1024 * 1024)

static char pattern[CHUNK];
static int listenFd = 0;

static pthread_mutex_t countLock = PTHREAD_MUTEX_INITIALIZER;
static long requestCount = 0;
static long connectionCount = 0;

static void initPattern(void)
{
    for (int i = 0; i < CHUNK; i++)
        pattern[i] = (i % 64 == 63) ? '\n' : (char)('a' + (i % 26));
}

static void sleepMs(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Options parsed from the query string. */
struct options {
    long size;           /* -1: not given */
    int echo;
    int env;
    const char *stderrText; /* points into the query string */
    size_t stderrLength;
    long pushMs;         /* -1: not given */
    long sleepMs;
    int status;          /* 0: not given */
};

static void parseOptions(const char *qs, struct options *o)
{
    memset(o, 0, sizeof(*o));
    o->size = -1;
    o->pushMs = -1;
    if (qs == NULL)
        return;
    const char *p = qs;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t nameLen = eq ? (size_t)(eq - p) : len;
        const char *value = eq ? eq + 1 : p + len;
        size_t valueLen = eq ? len - nameLen - 1 : 0;
        char number[32];
        long n = 0;
        if (valueLen < sizeof(number)) {
            memcpy(number, value, valueLen);
            number[valueLen] = '\0';
            n = strtol(number, NULL, 10);
        }
#define IS(name) (nameLen == strlen(name) && strncmp(p, name, nameLen) == 0)
        if (IS("size")) {
            if (n >= 0 && n <= MAX_SIZE)
                o->size = n;
        } else if (IS("echo")) {
            o->echo = 1;
        } else if (IS("env")) {
            o->env = 1;
        } else if (IS("stderr")) {
            o->stderrText = value;
            o->stderrLength = valueLen;
        } else if (IS("push")) {
            o->pushMs = n < 0 ? 0 : n;
        } else if (IS("sleep")) {
            o->sleepMs = n;
        } else if (IS("status")) {
            o->status = (int)n;
        }
#undef IS
        if (!end)
            break;
        p = end + 1;
    }
}

/* Growable byte buffer. */
struct buffer {
    char *data;
    size_t length;
    size_t capacity;
};

static int reserve(struct buffer *b, size_t extra)
{
    if (b->length + extra <= b->capacity)
        return 0;
    size_t capacity = b->capacity ? b->capacity : 8192;
    while (capacity < b->length + extra)
        capacity *= 2;
    char *data = realloc(b->data, capacity);
    if (!data)
        return -1;
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static void append(struct buffer *b, const char *p, size_t n)
{
    if (reserve(b, n) == 0) {
        memcpy(b->data + b->length, p, n);
        b->length += n;
    }
}

/* Read the whole request body; keep it only if keep is set. */
static long readBody(FCGX_Request *req, struct buffer *keep)
{
    char chunk[CHUNK];
    long total = 0;
    int n;
    while ((n = FCGX_GetStr(chunk, sizeof(chunk), req->in)) > 0) {
        total += n;
        if (keep)
            append(keep, chunk, (size_t)n);
    }
    return total;
}

/* Compare "NAME=VALUE" strings by NAME, then VALUE. */
static int compareParams(const void *a, const void *b)
{
    const char *x = *(const char *const *)a;
    const char *y = *(const char *const *)b;
    size_t xn = strcspn(x, "=");
    size_t yn = strcspn(y, "=");
    size_t n = xn < yn ? xn : yn;
    int c = memcmp(x, y, n);
    if (c != 0)
        return c;
    if (xn != yn)
        return xn < yn ? -1 : 1;
    return strcmp(x + xn, y + yn);
}

static void buildEnv(FCGX_Request *req, struct buffer *body)
{
    size_t count = 0;
    for (char **e = req->envp; e && *e; e++)
        count++;
    const char **sorted = calloc(count + 1, sizeof(char *));
    if (!sorted)
        return;
    for (size_t i = 0; i < count; i++)
        sorted[i] = req->envp[i];
    qsort(sorted, count, sizeof(char *), compareParams);
    for (size_t i = 0; i < count; i++) {
        append(body, sorted[i], strlen(sorted[i]));
        append(body, "\n", 1);
    }
    free(sorted);
}

static void respond(FCGX_Request *req, long requestNumber, long connections)
{
    struct options o;
    parseOptions(FCGX_GetParam("QUERY_STRING", req->envp), &o);

    struct buffer body = {NULL, 0, 0};
    long bodyLength = readBody(req, o.echo ? &body : NULL);

    if (o.stderrText) {
        FCGX_PutStr(o.stderrText, (int)o.stderrLength, req->err);
        FCGX_PutStr("\n", 1, req->err);
    }
    sleepMs(o.sleepMs);

    long contentLength = -1;
    if (o.pushMs >= 0) {
        contentLength = -1;
    } else if (o.echo) {
        contentLength = (long)body.length;
    } else if (o.env) {
        buildEnv(req, &body);
        contentLength = (long)body.length;
    } else if (o.size >= 0) {
        contentLength = o.size;
    } else {
        contentLength = (long)strlen(SMALL_BODY);
    }

    char head[512];
    int h = 0;
    if (o.status > 0)
        h += snprintf(head + h, sizeof(head) - h, "Status: %d\r\n", o.status);
    h += snprintf(head + h, sizeof(head) - h,
                  "Content-Type: text/plain\r\n"
                  "X-Pid: %ld\r\n"
                  "X-Requests: %ld\r\n"
                  "X-Connections: %ld\r\n"
                  "X-Body-Length: %ld\r\n",
                  (long)getpid(), requestNumber, connections, bodyLength);
    if (contentLength >= 0)
        h += snprintf(head + h, sizeof(head) - h, "Content-Length: %ld\r\n",
                      contentLength);
    h += snprintf(head + h, sizeof(head) - h, "\r\n");
    FCGX_PutStr(head, h, req->out);

    if (o.pushMs >= 0) {
        FCGX_PutS("part1\n", req->out);
        FCGX_FFlush(req->out);
        sleepMs(o.pushMs);
        FCGX_PutS("part2\n", req->out);
    } else if (o.echo || o.env) {
        size_t done = 0;
        while (done < body.length) {
            size_t n = body.length - done > CHUNK ? CHUNK : body.length - done;
            if (FCGX_PutStr(body.data + done, (int)n, req->out) < 0)
                break;
            done += n;
        }
    } else if (o.size >= 0) {
        long left = o.size;
        while (left > 0) {
            int n = left > CHUNK ? CHUNK : (int)left;
            if (FCGX_PutStr(pattern, n, req->out) < 0)
                break; /* peer went away */
            left -= n;
        }
    } else {
        FCGX_PutS(SMALL_BODY, req->out);
    }
    free(body.data);
}

/* Identity of the connection a request holds: fd number and socket inode. */
static ino_t socketInode(int fd)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return 0;
    return st.st_ino;
}

static void *worker(void *arg)
{
    (void)arg;
    FCGX_Request req;
    if (FCGX_InitRequest(&req, listenFd, 0) != 0) {
        fprintf(stderr, "responder: FCGX_InitRequest failed\n");
        return NULL;
    }
    int lastFd = -1;
    ino_t lastInode = 0;
    for (;;) {
        /* req.ipcFd >= 0 here only if the last request had keepConnection
         * set and FCGX_Finish_r kept the connection open. */
        int heldFd = req.ipcFd;
        int held = heldFd >= 0 && heldFd == lastFd;
        if (FCGX_Accept_r(&req) < 0)
            break;
        ino_t inode = socketInode(req.ipcFd);
        int isNew = !held || req.ipcFd != lastFd || inode != lastInode;
        lastFd = req.ipcFd;
        lastInode = inode;

        pthread_mutex_lock(&countLock);
        long requestNumber = ++requestCount;
        if (isNew)
            connectionCount++;
        long connections = connectionCount;
        pthread_mutex_unlock(&countLock);

        respond(&req, requestNumber, connections);
        FCGX_Finish_r(&req);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = 1;
    int backlog = 1024;
    const char *addr = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "t:l:b:h")) != -1) {
        switch (opt) {
        case 't': threads = atoi(optarg); break;
        case 'l': addr = optarg; break;
        case 'b': backlog = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-t THREADS] [-l ADDRESS] [-b BACKLOG]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads < 1)
        threads = 1;
    initPattern();

    if (FCGX_Init() != 0) {
        fprintf(stderr, "responder: FCGX_Init failed\n");
        return 1;
    }
    /* libfcgi turns SIGTERM/SIGUSR1 into "finish after the next request",
     * which leaves idle threads blocked in accept() forever.  Tests want
     * SIGTERM to end the process. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    if (addr) {
        listenFd = FCGX_OpenSocket(addr, backlog);
        if (listenFd < 0) {
            fprintf(stderr, "responder: cannot listen on %s\n", addr);
            return 1;
        }
    } else if (FCGX_IsCGI()) {
        fprintf(stderr, "responder: fd 0 is not a listening socket "
                        "(run it under spawn-fcgi or use -l)\n");
        return 2;
    }

    pthread_t *tids = calloc((size_t)threads, sizeof(pthread_t));
    if (!tids)
        return 1;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&tids[i], NULL, worker, NULL) != 0) {
            fprintf(stderr, "responder: pthread_create failed\n");
            return 1;
        }
    }
    worker(NULL);
    for (int i = 1; i < threads; i++)
        pthread_join(tids[i], NULL);
    return 0;
}
