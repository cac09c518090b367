#!/usr/bin/env python3
"""A mock DigitalOcean API and droplet metadata services for the boot test, on loopback.

Droplets are built from tests/fixtures/digitalocean/droplet.json (the API reference's shape):
    mock_cloud.py API_PORT FIXTURE TAG=ID:NAME:IP[,ID:NAME:IP...] [TAG=...] -- META_PORT:ID [META_PORT:ID...]
Serves GET /v2/droplets?tag_name=TAG on API_PORT (bearer token required) and GET /metadata/v1/id
on each META_PORT. Runs until killed.

With MOCK_CLOUD_HIDDEN set to a file's path, the droplets whose ids that file lists (one a line,
read at every request) are not listed: a droplet not created yet, or one terminated since.
"""
import os
import copy
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "dop_v1_boottest_0123456789"


def main():
    api_port, fixture = int(sys.argv[1]), sys.argv[2]
    sep = sys.argv.index("--")
    template = json.load(open(fixture))
    fleets = {}
    for spec in sys.argv[3:sep]:
        tag, members = spec.split("=", 1)
        fleets[tag] = []
        for m in members.split(","):
            droplet_id, name, ip = m.split(":")
            d = copy.deepcopy(template)
            d["id"], d["name"] = int(droplet_id), name
            d["networks"]["v4"][0]["ip_address"] = ip
            d["tags"] = [tag]
            fleets[tag].append(d)

    class Api(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(url.query)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self.reply(401, {"id": "unauthorized", "message": "Unable to authenticate you."})
            if url.path != "/v2/droplets":
                return self.reply(404, {"id": "not_found", "message": "The resource you were accessing could not be found."})
            hidden = set()
            if os.environ.get("MOCK_CLOUD_HIDDEN"):
                with open(os.environ["MOCK_CLOUD_HIDDEN"]) as f:
                    hidden = {int(line) for line in f if line.strip()}
            droplets = [d for d in fleets.get(query.get("tag_name", [""])[0], []) if d["id"] not in hidden]
            self.reply(200, {"droplets": droplets, "links": {}, "meta": {"total": len(droplets)}})

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    def metadata(droplet_id):
        class Meta(BaseHTTPRequestHandler):
            def do_GET(self):
                body = droplet_id.encode() if self.path == "/metadata/v1/id" else b"not found"
                self.send_response(200 if self.path == "/metadata/v1/id" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Meta

    servers = [ThreadingHTTPServer(("127.0.0.1", api_port), Api)]
    for spec in sys.argv[sep + 1:]:
        port, droplet_id = spec.split(":")
        servers.append(ThreadingHTTPServer(("127.0.0.1", int(port)), metadata(droplet_id)))
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
