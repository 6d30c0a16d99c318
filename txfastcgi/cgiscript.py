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

The response is parsed by twcgi (C{outReceived}), with one bound: a
response head still not ended after C{maxHeaderBytes} bytes
(L{txfastcgi.cgiresponse.DEFAULT_MAX_HEADER_BYTES}, as for FastCGI
applications) is refused: the client gets 502, the log says why, and the
script is ended (twcgi would keep buffering it without limit).
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

from txfastcgi.cgiresponse import DEFAULT_MAX_HEADER_BYTES
from txfastcgi.exchange import DEFAULT_MAX_STDERR_LINE, splitLines

__all__ = ["StreamingCGIProcessProtocol"]

log = Logger()


class StreamingCGIProcessProtocol(CGIProcessProtocol):
    """
    A L{CGIProcessProtocol} streaming the request body to the script with
    backpressure and logging its standard error by lines (see the module
    docstring).

    @ivar script: the script's file name, for the log.
    @ivar maxStderrLine: see L{DEFAULT_MAX_STDERR_LINE}.
    @ivar maxHeaderBytes: the most bytes of response head accepted.
    """

    def __init__(
        self,
        request: Any,
        script: str,
        *,
        maxStderrLine: int = DEFAULT_MAX_STDERR_LINE,
        maxHeaderBytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        """
        @param request: the request the script answers.
        @param script: the script's file name, for the log.
        @param maxStderrLine: see L{DEFAULT_MAX_STDERR_LINE}.
        @param maxHeaderBytes: the most bytes of response head accepted.
        """
        self.script = script
        self.maxStderrLine = maxStderrLine
        self.maxHeaderBytes = maxHeaderBytes
        self._refused = False
        self._sender: FileSender | None = None
        self._stderrHeld = b""
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
        Parse and pass on the script's output as twcgi does, refusing a
        response head that grows past C{maxHeaderBytes}.

        @param output: bytes the script wrote to its standard output.
        """
        if self._refused:
            return
        super().outReceived(output)  # type: ignore[no-untyped-call]
        if self.handling_headers and len(self.headertext) > self.maxHeaderBytes:
            self._refuseHead()

    def _refuseHead(self) -> None:
        """
        Answer 502 for a response head over the limit and end the script.
        """
        self._refused = True
        self.headertext = b""
        log.error(
            "CGI script {script} sent a response head of more than {limit} bytes "
            "for {uri}; answering 502",
            script=self.script,
            limit=self.maxHeaderBytes,
            uri=self._uri(),
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
        lines, self._stderrHeld = splitLines(self._stderrHeld, data, self.maxStderrLine)
        for line in lines:
            self._logStderr(line)

    def _logStderr(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        log.warn(
            "CGI script {script} stderr for {uri}: {line}",
            script=self.script,
            uri=self._uri(),
            stream="stderr",
            line=line.decode("utf-8", "replace"),
        )

    def _flushStderr(self) -> None:
        if self._stderrHeld:
            held, self._stderrHeld = self._stderrHeld, b""
            self._logStderr(held)

    # -- the end

    def processEnded(self, reason: Failure) -> None:
        """
        The script ended: finish the response as twcgi does, or, when the
        client has gone away, only log it.

        @param reason: L{ProcessDone} or L{ProcessTerminated}.
        """
        self._stopTransfer()
        self._flushStderr()
        if self._refused:
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
