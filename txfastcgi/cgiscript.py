# -*- test-case-name: tests.test_cgiscript -*-
"""
L{StreamingCGIProcessProtocol}: the process side of a CGI script run by
the configured server (L{txfastcgi.gateway}), twcgi's
L{CGIProcessProtocol} without its unbounded buffers.

twcgi reads the whole request body into memory and writes it to the
script's standard input at once, and keeps everything the script writes to
its standard error until it exits.  Here:

  - The spooled body (C{request.content}: memory, or a temporary file of up
    to C{LimitRequestBody}) is rewound and sent by a
    L{twisted.protocols.basic.FileSender} registered as a producer on the
    process's standard input: one chunk is read from the spool when the
    previous one has gone into the pipe, so at most a chunk of the body is
    held however large it is.  Standard input is closed after the last byte
    (at once for an empty body).
  - A script that exits, or closes its standard input, before reading the
    whole body ends the transfer: one info line, no traceback, and the
    response is whatever the script wrote.
  - When the client goes away (the request's producer is stopped, or the
    request is lost), the transfer stops, the pipes are closed (as twcgi
    does) and the script gets C{SIGTERM} (as Apache's mod_cgi does): a
    script not reading its input would otherwise hold its pipes, and its
    process, open.  Its end is then logged at info level: nobody is left
    to answer.
  - Standard error is logged a line at a time, tagged with the script and
    the request URI, as L{txfastcgi.exchange} logs a FastCGI application's
    C{FCGI_STDERR}; a partial line longer than L{DEFAULT_MAX_STDERR_LINE}
    bytes is logged without waiting for its newline.

The response head is parsed by L{txfastcgi.cgiresponse.ResponseHeadParser}
and applied as for a FastCGI application (L{txfastcgi.exchange.writeResponseHead}):
C{Status}, C{Location} (a full URL without C{Status} is a 302 with a short
body when the script gave none; a local path is an internal redirect: the
same site serves a GET for it, and the script's output is dropped),
hop-by-hop headers dropped, C{Server}/C{Date} of the script's replacing
Twisted's.  A malformed head, or one longer than C{maxHeaderBytes}
(L{txfastcgi.cgiresponse.DEFAULT_MAX_HEADER_BYTES}), is answered 502 with the
reason in the log, and the script is ended.  A script that ends before its
head is complete gets twcgi's 500 ("Premature end of script headers").
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web import http, pages
from twisted.web.twcgi import CGIProcessProtocol

from txfastcgi.cgiresponse import (
    DEFAULT_MAX_HEADER_BYTES,
    LOCAL_REDIRECT,
    MalformedResponseError,
    ResponseHeadParser,
)
from txfastcgi.exchange import (
    DEFAULT_MAX_STDERR_LINE,
    LoggedLines,
    abortResponse,
    writeResponseHead,
)
from txfastcgi.resource import DEFAULT_MAX_REDIRECTS, internalRedirect

__all__ = ["StreamingCGIProcessProtocol"]

log = Logger()


class StreamingCGIProcessProtocol(CGIProcessProtocol, LoggedLines):
    """
    A L{CGIProcessProtocol} streaming the request body to the script with
    backpressure and logging its standard error by lines (see the module
    docstring).

    @ivar script: the script's file name, for the log.
    @ivar maxStderrLine: see L{DEFAULT_MAX_STDERR_LINE}.
    @ivar maxHeaderBytes: the most bytes of response head accepted.
    @ivar maxRedirects: internal redirects allowed per request.
    """

    def __init__(
        self,
        request: Any,
        script: str,
        *,
        maxStderrLine: int = DEFAULT_MAX_STDERR_LINE,
        maxHeaderBytes: int = DEFAULT_MAX_HEADER_BYTES,
        maxRedirects: int = DEFAULT_MAX_REDIRECTS,
    ) -> None:
        """
        @param request: the request the script answers.
        @param script: the script's file name, for the log.
        @param maxStderrLine: see L{DEFAULT_MAX_STDERR_LINE}.
        @param maxHeaderBytes: the most bytes of response head accepted.
        @param maxRedirects: internal redirects allowed per request.
        """
        self.script = script
        self.maxStderrLine = maxStderrLine
        self.maxHeaderBytes = maxHeaderBytes
        self.maxRedirects = maxRedirects
        self._parser = ResponseHeadParser(maxHeaderBytes)
        self._state = "HEAD"
        self._contentLength: int | None = None
        self._remaining: int | None = None
        self._overrun = False
        self._sender: FileSender | None = None
        self._clientGone = False
        super().__init__(request)  # type: ignore[no-untyped-call]

    # -- the request body

    def connectionMade(self) -> None:
        """
        Register as the request's producer (as twcgi does) and start sending
        the spooled body to the script's standard input.
        """
        if self._clientGone:
            self._endScript()
            return
        request: Any = self.request
        request.registerProducer(self, True)
        content = request.content
        if content is None:
            self._transport().closeStdin()
            return
        content.seek(0, 0)
        sender = self._sender = FileSender()
        sent: Deferred[object] = sender.beginFileTransfer(  # type: ignore[no-untyped-call]
            content, self._transport()
        )
        sent.addCallbacks(self._sent, self._notSent)

    def _sent(self, ignored: object) -> None:
        """
        The last byte of the body is in the pipe: close standard input.
        """
        self._sender = None
        self._transport().closeStdin()

    def _notSent(self, reason: Failure) -> None:
        """
        The transfer stopped before the end of the body: quietly if this
        protocol stopped it, else (the script closed its standard input,
        or exited, first) with one info line.
        """
        if self._sender is None:
            return
        self._sender = None
        log.info(
            "CGI script {script} closed its input before reading the whole "
            "request body for {uri}; stopped sending it",
            script=self.script,
            uri=self._uri(),
        )

    def _stopTransfer(self) -> None:
        """
        Stop sending the body, if it is being sent.
        """
        sender = self._sender
        if sender is None:
            return
        self._sender = None
        # Unregistered first: a pull producer still registered would be
        # asked for more when the pipe's buffer drains.
        self._transport().unregisterProducer()
        sender.stopProducing()  # type: ignore[no-untyped-call]

    # -- the client going away

    def stopProducing(self) -> None:
        """
        The client went away: stop the transfer, close the pipes, end the
        script.
        """
        self._goneAway()

    def _finished(self, result: object) -> None:
        """
        Record the end of the response; a lost request is the client going
        away.
        """
        super()._finished(result)  # type: ignore[no-untyped-call]
        if isinstance(result, Failure):
            self._goneAway()

    def _goneAway(self) -> None:
        if self._clientGone:
            return
        self._clientGone = True
        if self.transport is not None:
            self._endScript()

    def _endScript(self) -> None:
        """
        Stop the transfer, close the pipes (as twcgi's C{stopProducing}
        does) and send the script C{SIGTERM}.
        """
        self._stopTransfer()
        transport = self._transport()
        transport.loseConnection()
        if transport.pid is not None:
            try:
                transport.signalProcess("TERM")
            except ProcessExitedAlready:
                pass

    # -- the response

    def outReceived(self, output: bytes) -> None:
        """
        Parse the script's response head with L{ResponseHeadParser} (the
        CGI/1.1 rules the FastCGI side follows), then pass its body on.

        @param output: bytes the script wrote to its standard output.
        """
        state = self._state
        if state == "BODY":
            self._writeBody(output)
            return
        if state != "HEAD":
            return
        try:
            head = self._parser.feed(output)
        except MalformedResponseError as e:
            self._refuseHead(str(e))
            return
        if head is None:
            return
        self.handling_headers = 0
        request: Any = self.request
        if self._clientGone or self._requestFinished or request.channel is None:
            self._state = "DISCARD"
            return
        if head.kind is LOCAL_REDIRECT:
            assert head.location is not None
            # Served again for the local path; the script's output is
            # read to its end and dropped, its input no longer fed.
            self._state = "REDIRECTED"
            self._stopTransfer()
            request.unregisterProducer()
            internalRedirect(request, head.location, maxRedirects=self.maxRedirects)
            return
        if writeResponseHead(request, head):
            self._state = "DISCARD"
            return
        self._state = "BODY"
        if (
            head.contentLength is not None
            and request.method != b"HEAD"
            and head.status not in http.NO_BODY_CODES
        ):
            self._contentLength = self._remaining = head.contentLength
        if head.bodyStart:
            self._writeBody(head.bodyStart)

    def _writeBody(self, data: bytes) -> None:
        """
        Pass body bytes on, no more than the Content-Length the script
        announced: the rest is dropped (logged once), as it would read as
        the start of the next response on a kept connection.
        """
        if self._clientGone:
            return
        remaining = self._remaining
        if remaining is not None:
            if len(data) > remaining:
                if not self._overrun:
                    self._overrun = True
                    log.warn(
                        "CGI script {script} wrote more than its Content-Length "
                        "({contentLength}) for {uri}; dropping the rest",
                        script=self.script,
                        contentLength=self._contentLength,
                        uri=self._uri(),
                    )
                data = data[:remaining]
            self._remaining = remaining - len(data)
        if data:
            self.request.write(data)

    def _refuseHead(self, reason: str) -> None:
        """
        Answer 502 for a malformed response head and end the script.
        """
        self._state = "REFUSED"
        self.handling_headers = 0
        log.error(
            "CGI script {script} sent a malformed response head for {uri} "
            "({reason}); answering 502",
            script=self.script,
            uri=self._uri(),
            reason=reason,
        )
        request: Any = self.request
        if not self._requestFinished and request.channel is not None:
            request.unregisterProducer()
            # Writes the page and finishes the request.
            pages.errorPage(
                http.BAD_GATEWAY,
                "Bad Gateway",
                "The script sent an invalid response.",
            ).render(request)
        self._endScript()

    # -- standard error

    def errReceived(self, data: bytes) -> None:
        """
        Log the script's standard error a line at a time.

        @param data: bytes the script wrote to its standard error.
        """
        self._stderr(data)

    def _logStderr(self, line: bytes) -> None:
        log.warn(
            "CGI script {script} stderr for {uri}: {line}",
            script=self.script,
            uri=self._uri(),
            stream="stderr",
            line=line.decode("utf-8", "replace"),
        )

    # -- the end

    def processEnded(self, reason: Failure) -> None:
        """
        The script ended: finish the response as twcgi does, or, when the
        client has gone away, only log it.

        @param reason: L{ProcessDone} or L{ProcessTerminated}.
        """
        self._stopTransfer()
        self._flushStderr()
        if self._state in ("REFUSED", "REDIRECTED"):
            # The request was answered (502) or handed to another resource.
            return
        if self._remaining and not self._clientGone and not self._requestFinished:
            log.error(
                "Response from CGI script {script} for {uri} cut short: it ended "
                "{missing} bytes short of its Content-Length; closing the client "
                "connection",
                script=self.script,
                uri=self._uri(),
                missing=self._remaining,
            )
            self.request.unregisterProducer()
            abortResponse(self.request)
            return
        if self._clientGone:
            log.info(
                "CGI script {script} for {uri} ended after the client went away "
                "(exit code {exitCode}, signal {signal})",
                script=self.script,
                uri=self._uri(),
                exitCode=getattr(reason.value, "exitCode", None),
                signal=getattr(reason.value, "signal", None),
            )
            return
        super().processEnded(reason)  # type: ignore[no-untyped-call]

    def _transport(self) -> Any:
        """
        The process transport (a L{twisted.internet.process.Process}: also
        the consumer of standard input).
        """
        return self.transport

    def _uri(self) -> str:
        uri: bytes = self.request.uri
        return uri.decode("latin-1")
