#!/usr/bin/env python3
"""Push a corpus of many small two-platform images into a registry.

Each image is an OCI index of linux/amd64 and linux/arm64 manifests, each
with its own config and layer plus a base layer shared by every image of
that platform: 7 blobs an image.  Used to measure per-request overheads of
import and export (bench/README.md).

usage: many_images.py HOST:PORT [--images N] [--seed S] [--prefix P/]
(plain HTTP)
Prints the references, one a line.
"""
import argparse
import concurrent.futures
import hashlib
import http.client
import json
import random
import sys

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def dg(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Reg:
    def __init__(self, host):
        self.host = host
        self.c = http.client.HTTPConnection(host)

    def req(self, method, path, body=None, headers=None):
        self.c.request(method, path, body=body, headers=headers or {})
        r = self.c.getresponse()
        r.read()
        return r

    def blob(self, repo, data):
        d = dg(data)
        r = self.req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
                     {"Content-Type": "application/octet-stream"})
        if r.status == 202:
            loc = r.getheader("Location")
            loc = loc.split(self.host, 1)[-1]
            sep = "&" if "?" in loc else "?"
            r = self.req("PUT", f"{loc}{sep}digest={d}", data,
                         {"Content-Type": "application/octet-stream"})
        assert r.status == 201, (r.status, repo)
        return {"mediaType": "", "digest": d, "size": len(data)}

    def manifest(self, repo, ref, mt, data):
        r = self.req("PUT", f"/v2/{repo}/manifests/{ref}", data, {"Content-Type": mt})
        assert r.status == 201, (r.status, repo, ref)


def image(host, i, seed, prefix=""):
    reg = Reg(host)
    rnd = random.Random(seed * 100003 + i)
    repo = f"{prefix}many/app{i:04d}"
    mans = []
    for arch in ("amd64", "arm64"):
        base = random.Random(f"{seed}-{arch}").randbytes(30000)
        own = rnd.randbytes(rnd.randint(8000, 72000))
        cfg = json.dumps({"architecture": arch, "os": "linux",
                          "config": {"Env": [f"I={i}"]},
                          "rootfs": {"type": "layers",
                                     "diff_ids": [dg(base), dg(own)]}}).encode()
        layers = []
        for b in (base, own):
            d = reg.blob(repo, b)
            d["mediaType"] = OCI_LAYER
            layers.append(d)
        c = reg.blob(repo, cfg)
        c["mediaType"] = OCI_CONFIG
        m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": c, "layers": layers}).encode()
        reg.manifest(repo, dg(m), OCI_MANIFEST, m)
        mans.append({"mediaType": OCI_MANIFEST, "digest": dg(m), "size": len(m),
                     "platform": {"architecture": arch, "os": "linux"}})
    idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                      "manifests": mans}).encode()
    reg.manifest(repo, "1", OCI_INDEX, idx)
    return f"{repo}:1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prefix", default="", help="repository prefix, ending in /")
    a = ap.parse_args()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        for ref in ex.map(lambda i: image(a.host, i, a.seed, a.prefix), range(a.images)):
            print(ref)


if __name__ == "__main__":
    sys.exit(main())
