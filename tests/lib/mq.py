"""mq: a small MQTT 3.1.1 client on a raw socket, for tests that play
devices or services on a real mosquitto (QoS 0 and 1, a last will, user
and password), without a client library."""
import select
import socket
import struct
import threading
import time

from sp import mqtt_len, mqtt_str


class Mq:
    """One connection; CONNACK's return code in rc (0 = accepted)."""

    def __init__(self, port, cid, user=None, pw=None, will=None, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.buf = b""
        self.pid = 0
        self.lock = threading.Lock()
        flags = 0x02
        payload = mqtt_str(cid.encode())
        if will:
            flags |= 0x04
            payload += mqtt_str(will[0].encode()) + mqtt_str(will[1].encode())
        if user is not None:
            flags |= 0x80
            payload += mqtt_str(user.encode())
        if pw is not None:
            flags |= 0x40
            payload += mqtt_str(pw.encode())
        self.send(0x10, mqtt_str(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 60) + payload)
        self.rc = None
        deadline = time.time() + timeout
        while self.rc is None and time.time() < deadline:
            for head, body in self.poll(0.1):
                if head >> 4 == 2:
                    self.rc = body[1]
        if self.rc is None:
            self.rc = -1

    def send(self, head, body):
        with self.lock:
            self.sock.sendall(bytes([head]) + mqtt_len(len(body)) + body)

    def next_id(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def publish(self, topic, payload, qos=0):
        t = topic if isinstance(topic, bytes) else topic.encode()
        p = payload if isinstance(payload, bytes) else payload.encode()
        body = mqtt_str(t) + (struct.pack("!H", self.next_id()) if qos else b"") + p
        self.send(0x30 | (qos << 1), body)

    def subscribe(self, filters):
        body = struct.pack("!H", self.next_id())
        for f in filters:
            body += mqtt_str(f.encode()) + b"\x01"
        self.send(0x82, body)

    def poll(self, wait=0.0):
        """The whole packets that arrived within wait seconds."""
        r, _, _ = select.select([self.sock], [], [], wait)
        if r:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out = []
        while len(self.buf) >= 2:
            n, mult, i = 0, 1, 1
            while True:
                if i >= len(self.buf):
                    return out
                b = self.buf[i]
                n += (b & 127) * mult
                mult *= 128
                i += 1
                if not b & 128:
                    break
            if len(self.buf) < i + n:
                return out
            head, body = self.buf[0], self.buf[i:i + n]
            self.buf = self.buf[i + n:]
            if head >> 4 == 3 and head & 0x06:  # QoS 1: acknowledge
                tl = struct.unpack("!H", body[:2])[0]
                self.send(0x40, body[2 + tl:4 + tl])
            out.append((head, body))
        return out

    def messages(self, wait=0.0):
        """(topic, payload) of the PUBLISH packets among poll's."""
        out = []
        for head, body in self.poll(wait):
            if head >> 4 != 3:
                continue
            tl = struct.unpack("!H", body[:2])[0]
            off = 2 + tl + (2 if head & 0x06 else 0)
            out.append((body[2:2 + tl].decode("utf-8", "replace"), body[off:]))
        return out

    def close(self):
        try:
            self.send(0xE0, b"")
        except OSError:
            pass
        self.sock.close()
