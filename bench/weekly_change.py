#!/usr/bin/env python3
"""Make a week's change in the bench registry: new top layers on a few tags.

Usage: weekly_change.py HOST CORPUS_DIR OUT_DIR [--pct P] [--tags N]

HOST serves the corpus of bench/gen_corpus.py (CORPUS_DIR, for images.txt
and corpus.json) over plain HTTP.  The first N (default 3) tags whose
manifest is a single image manifest each get one new gzip'd tar layer on
top, a new config (the old one with the layer's diff_id and a history
entry added) and a new manifest, pushed through the registry API under the
same tag.  The layers are sized so that the new bytes (layers, configs,
manifests) are P percent (default 5) of the unique bytes of the new state.
Contents are pseudo-random (seeded: the same bytes every run), so
compression cannot shrink them.

Writes OUT_DIR/new_blobs.txt (the new configs and layers, one digest a
line) and OUT_DIR/change.json (tags changed, new bytes, total bytes of the
old and of the new state, the fraction).
"""

import argparse
import hashlib
import io
import json
import os
import random
import sys
import tarfile
import urllib.error
import urllib.request
import zlib

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MTIME = 1622505600
ACCEPT = ", ".join([MT_MANIFEST, MT_DOCKER_MANIFEST, "application/vnd.oci.image.index.v1+json"])

# The registry is on 127.0.0.1: never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with OPENER.open(req, timeout=300) as resp:
        return resp.status, dict(resp.headers), resp.read()


def get_manifest(host, repo, tag):
    _, headers, body = request("GET", f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
    return headers.get("Content-Type", "").split(";")[0], body


def push_blob(host, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, _, _ = request_status("HEAD", f"http://{host}/v2/{repo}/blobs/{digest}")
    if status == 200:
        return digest
    _, headers, _ = request("POST", f"http://{host}/v2/{repo}/blobs/uploads/")
    loc = headers["Location"]
    if loc.startswith("/"):
        loc = f"http://{host}{loc}"
    sep = "&" if "?" in loc else "?"
    request("PUT", f"{loc}{sep}digest={digest}", data=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    return digest


def request_status(method, url):
    try:
        return request(method, url)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), b""


def make_layer(label, size):
    """A tar of one file of SIZE pseudo-random bytes, gzip level 1; returns
    (compressed bytes, sha256 of the uncompressed tar)."""
    rnd = random.Random(label)
    payload = rnd.randbytes(size)
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"opt/weekly/{label}.bin")
        info.size, info.mtime, info.mode, info.uname, info.gname = size, MTIME, 0o644, "root", "root"
        tar.addfile(info, io.BytesIO(payload))
    raw = tbuf.getvalue()
    co = zlib.compressobj(1, zlib.DEFLATED, 31)
    return co.compress(raw) + co.flush(), "sha256:" + hashlib.sha256(raw).hexdigest()


def main():
    ap = argparse.ArgumentParser(description="Push new top layers to a few tags of the bench registry.")
    ap.add_argument("host")
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--pct", type=float, default=5.0)
    ap.add_argument("--tags", type=int, default=3)
    a = ap.parse_args()
    if not 0 < a.pct < 100 or a.tags < 1:
        ap.error("--pct must be in (0, 100), --tags positive")
    with open(os.path.join(a.corpus, "corpus.json")) as f:
        old_total = json.load(f)["bytes"]
    with open(os.path.join(a.corpus, "images.txt")) as f:
        refs = [line.strip() for line in f if line.strip()]

    picked = []
    for ref in refs:
        repo, tag = ref.rsplit(":", 1)
        mt, body = get_manifest(a.host, repo, tag)
        if mt in (MT_MANIFEST, MT_DOCKER_MANIFEST):
            picked.append((repo, tag, mt, body))
        if len(picked) == a.tags:
            break
    if not picked:
        sys.exit("weekly_change: no single-manifest tag in the corpus")

    # new / (old + new - replaced) = pct: replaced (old manifests and configs
    # no longer referenced) is small, so aim at new = old * p / (1 - p)
    p = a.pct / 100
    per_layer = int(old_total * p / (1 - p) / len(picked))
    new_blobs, new_bytes, replaced, tags = [], 0, 0, []
    for repo, tag, mt, body in picked:
        manifest = json.loads(body)
        _, _, cbody = request("GET", f"http://{a.host}/v2/{repo}/blobs/{manifest['config']['digest']}")
        config = json.loads(cbody)
        layer, diff_id = make_layer(f"{repo}-{tag}", per_layer)
        ldigest = push_blob(a.host, repo, layer)
        config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
        config.setdefault("history", []).append({"created": "2021-06-08T00:00:00Z",
                                                 "created_by": "ADD weekly.bin /opt/weekly/"})
        cdata = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
        cdigest = push_blob(a.host, repo, cdata)
        replaced += len(body) + manifest["config"]["size"]
        manifest["config"] = dict(manifest["config"], digest=cdigest, size=len(cdata))
        manifest["layers"].append({"mediaType": MT_LAYER_GZIP if mt == MT_MANIFEST else
                                   "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                   "digest": ldigest, "size": len(layer)})
        mdata = json.dumps(manifest, separators=(",", ":")).encode()
        request("PUT", f"http://{a.host}/v2/{repo}/manifests/{tag}", data=mdata, headers={"Content-Type": mt})
        new_blobs += [cdigest, ldigest]
        new_bytes += len(layer) + len(cdata) + len(mdata)
        tags.append(f"{repo}:{tag}")

    new_total = old_total + new_bytes - replaced
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "new_blobs.txt"), "w") as f:
        f.write("".join(d + "\n" for d in new_blobs))
    summary = {"tags": tags, "new_bytes": new_bytes, "old_total_bytes": old_total,
               "new_total_bytes": new_total, "new_fraction": round(new_bytes / new_total, 4)}
    with open(os.path.join(a.out, "change.json"), "w") as f:
        json.dump(summary, f)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
