#!/usr/bin/env python3
"""Bad input of every kind gets a clear 4xx and never hurts the daemons."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from sp import Platform, check, main  # noqa: E402


def err(p, method, path, body, status, where=None, headers=None):
    st, hdr, b = p.http(method, path, body, headers=headers)
    ok = st == status and isinstance(b, dict) and "error" in b
    ok = ok and all(k in b["error"] for k in ("code", "message", "where"))
    if where is not None:
        ok = ok and b["error"]["where"] == where
    check(ok, "%s %s -> %d %s (got %d %s)" % (method, path, status,
                                             where or "", st, b))
    return hdr


def test():
    p = Platform(daemons=("aggd", "ingestd", "apid"),
                 extra={"apid": ["--body-max", "65536"]}).start()
    try:
        err(p, "POST", "/api/v1/ingest", "{not json", 400, "body")
        err(p, "POST", "/api/v1/ingest", "[1,2]", 400, "body")
        err(p, "POST", "/api/v1/ingest", {"datapoints": []}, 400, "sensor_id")
        err(p, "POST", "/api/v1/ingest", {"sensor_id": 5, "datapoints": []}, 400,
            "sensor_id")
        err(p, "POST", "/api/v1/ingest", {"sensor_id": "a", "datapoints": 3}, 400,
            "datapoints")
        err(p, "POST", "/api/v1/ingest", {"sensor_id": "a{b}", "datapoints": [
            {"value": 1}]}, 400, "sensor_id")
        err(p, "POST", "/api/v1/ingest", {"sensor_id": "a", "datapoints": [
            {"value": "hot"}]}, 400, "body")
        err(p, "POST", "/api/v1/record", {"data": "x"}, 400, "data")
        err(p, "POST", "/api/v1/record", b"\xff\xfe{}", 400, "body")
        # Partial success: the good point is kept, the bad ones are named.
        st, _, b = p.http("POST", "/api/v1/ingest", {"sensor_id": "mixed", "datapoints": [
            {"timestamp": "2024-01-01T00:00:00Z", "value": 1.5},
            {"timestamp": "not a time", "value": 2},
            {"timestamp": "2024-01-01T00:02:00Z"},
            {"timestamp": "2024-01-01T00:03:00Z", "value": True},
            {"timestamp": 99999999999999999, "value": 1},
            {"timestamp": "2024-01-01T00:04:00Z", "value": None}]})
        check(st == 200 and b["accepted"] == 1 and b["rejected"] == 5,
              "partial batch: 1 accepted, 5 rejected (%s)" % b)
        fields = [(e["index"], e["field"]) for e in b["errors"]]
        check(fields == [(1, "timestamp"), (2, "value"), (3, "value"),
                         (4, "timestamp"), (5, "value")],
              "errors name index and field: %s" % fields)
        # Huge body: refused without being read.
        s = socket.create_connection(("127.0.0.1", p.api_port))
        s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 1000000000\r\n\r\n" + b"x" * 4096)
        resp = s.recv(4096)
        s.close()
        check(resp.startswith(b"HTTP/1.1 413") and b'"where":"body"' in resp,
              "a 1 GB body is refused with 413 before it is read")
        # Chunked, so no length up front: read up to the limit, then 413.
        s = socket.create_connection(("127.0.0.1", p.api_port))
        chunk = b"x" * 32768
        req = b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        req += (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 4 + b"0\r\n\r\n"
        try:
            s.sendall(req)
        except OSError:
            pass
        resp = s.recv(4096)
        s.close()
        check(resp.startswith(b"HTTP/1.1 413"), "an oversized chunked body gets 413")
        # Unknown routes and methods.
        err(p, "GET", "/api/v1/nope", None, 404)
        err(p, "GET", "/api/v1/ingest", None, 405)
        err(p, "POST", "/api/v1/stats/x", "", 405)
        # A DELETE-only route names DELETE, in Allow and in the message.
        st, hdr, b = p.http("GET", "/api/v1/series/x")
        check(st == 405 and hdr.get("Allow") == "DELETE" and
              b["error"]["message"] == "use DELETE",
              "GET on a DELETE route -> 405 naming DELETE (%s %s %s)"
              % (st, hdr.get("Allow"), b))
        err(p, "GET", "/api/v1/stats/unknown_series", None, 404, "series")
        err(p, "GET", "/api/v1/stats/x?start=yesterday", None, 400, "start")
        err(p, "GET", "/api/v1/stats/x?percentiles=200", None, 400, "percentiles")
        for bad in ("0", "x", "100001"):
            err(p, "GET", "/api/v1/series?limit=" + bad, None, 400, "limit")
            err(p, "GET", "/api/v1/anomalies/x?limit=" + bad, None, 400, "limit")
        err(p, "GET", "/api/v1/stats/%zz", None, 404)
        err(p, "POST", "/api/v1/aggregate", {"metric_name": "mixed"}, 400, "interval")
        err(p, "POST", "/api/v1/aggregate", {"metric_name": "mixed",
                                             "interval": "5 parsecs"}, 400, "interval")
        err(p, "POST", "/api/v1/aggregate", {"metric_name": "mixed",
                                             "interval": "1h", "aggregation": "p200"},
            400, "aggregation")
        err(p, "POST", "/api/v1/aggregate", "{", 400, "body")
        # A URL that decodes to bytes that are not UTF-8: refused, named
        # (apid once crashed packing such a rule name for alertd).
        err(p, "GET", "/api/rules/%FF%FEcsv", None, 400, "path")
        err(p, "GET", "/api/v1/stats/x?start=%C3", None, 400, "start")
        err(p, "GET", "/api/v1/stats/x?%E6%BC=1", None, 400, "query")
        st, _, b = p.http("POST", "/write?db=%C3", "m value=1", port=p.ingest_port)
        check(st == 400 and b["error"]["where"] == "db", "ingestd: a db that is not UTF-8: 400")
        # A range from a hair above int64's lowest nanosecond (aggd once
        # overflowed working out the day it cuts).
        st, _, b = p.http("DELETE", "/api/v1/series/mixed?start=-9223372036854&end=1")
        check(st == 200, "DELETE from start=-9223372036854 ms: %s %s" % (st, b))
        # Garbage on the wire, then a half-open connection.
        s = socket.create_connection(("127.0.0.1", p.api_port))
        s.sendall(b"\x00\x01GARBAGE / HTTP/9\r\n\r\n")
        s.recv(100)
        s.close()
        s = socket.create_connection(("127.0.0.1", p.api_port))
        s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        s.close()
        # Still answering afterwards, with the good point stored.
        st, _, b = p.http("GET", "/api/v1/stats/mixed")
        check(st == 200 and b["count"] == 1 and b["mean"] == 1.5,
              "daemons still answer; the valid point was kept")
        # The same on ingestd's own port.
        st, _, b = p.http("POST", "/api/v1/ingest", "{", port=p.ingest_port)
        check(st == 400 and b["error"]["where"] == "body", "ingestd port: 400 on bad JSON")
        st, _, b = p.http("POST", "/write?precision=fortnight", "m value=1",
                          port=p.ingest_port)
        check(st == 400 and b["error"]["where"] == "precision", "bad precision named")
    finally:
        p.stop()


if __name__ == "__main__":
    main(test)
