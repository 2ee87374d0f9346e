"""ws: a small WebSocket client over raw sockets (RFC 6455), written for the
tests so they can also send what a real client never would: bad frames,
unmasked frames, oversized messages, and silence."""
import base64
import hashlib
import json
import os
import queue
import socket
import struct
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


class Closed(Exception):
    pass


class WS:
    def __init__(self, port, path="/api/v1/stream", rcvbuf=None, timeout=10,
                 headers=None, tls=None):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        if tls:  # an ssl.SSLContext: wss://
            s = tls.wrap_socket(s, server_hostname="127.0.0.1")
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n"
                  b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: " + key + b"\r\n"
                  b"Sec-WebSocket-Version: 13\r\n"
                  + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                             for k, v in (headers or {}).items())
                  + b"\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise Closed("closed during the handshake: %r" % buf)
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n")[0].decode()
        want = base64.b64encode(hashlib.sha1(key + GUID).digest())
        if not self.status_line.startswith("HTTP/1.1 101"):
            raise Closed("no upgrade: %s" % head.decode(errors="replace"))
        if b"Sec-WebSocket-Accept: " + want not in head:
            raise Closed("wrong Sec-WebSocket-Accept: %r" % head)
        self.sock = s
        self.lock = threading.Lock()
        self.q = queue.Queue()
        self.close_code = None
        self.close_reason = None
        self.eof = False
        self.thread = None

    # --- frames ---------------------------------------------------------
    def send_frame(self, opcode, payload, fin=True, mask=True, rsv=0,
                   length=None):
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        m = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, m | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, m | 126, n)
        else:
            head = struct.pack("!BBQ", b0, m | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
            head += key
        with self.lock:
            self.sock.sendall(head + payload)

    def send_json(self, obj):
        self.send_frame(TEXT, json.dumps(obj).encode())

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed("eof")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        if b1 & 0x80:
            raise Closed("server frames must not be masked")
        return b0 & 0x0F, self._read(n)

    # --- background reader ----------------------------------------------
    def start(self):
        """Read in a thread: answer pings, queue text messages as JSON,
        record the close code and reason."""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        try:
            self.sock.settimeout(None)
            while True:
                op, data = self.recv_frame()
                if op == PING:
                    self.send_frame(PONG, data)
                elif op == TEXT:
                    self.q.put(json.loads(data))
                elif op == CLOSE:
                    self._closed(data)
                    break
        except (Closed, OSError):
            self.eof = True
        self.q.put(None)

    def _closed(self, data):
        self.close_code = struct.unpack("!H", data[:2])[0] if data else 1005
        self.close_reason = data[2:].decode(errors="replace")
        try:
            self.send_frame(CLOSE, data[:2])
        except OSError:
            pass

    def get(self, timeout=10):
        """The next message, or None when the connection ended."""
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def expect_close(self, timeout=10):
        """Read (without a thread) until the server closes; returns the
        close code (None when the socket just ended)."""
        self.sock.settimeout(timeout)
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                op, data = self.recv_frame()
                if op == CLOSE:
                    self._closed(data)
                    return self.close_code
        except (Closed, OSError):
            self.eof = True
        return self.close_code

    def close(self):
        try:
            self.send_frame(CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass
        if self.thread:
            self.thread.join(5)
        self.sock.close()
