#!/usr/bin/env python3
"""Generate the benchmark corpus of ferry: a product release as an OCI layout.

Usage: gen_corpus.py OUTDIR [--size-mb N] [--jobs N] [--force]

OUTDIR becomes an OCI image layout (oci-layout, index.json, blobs/sha256/)
holding about N MB (10^6 bytes; default 1000) of blobs in 11 tags that
look like a container product release: ten goharbor/*:v2.3.0 images and
library/alpine:3.14.  index.json has one descriptor per tag, annotated
org.opencontainers.image.ref.name = <repo>:<tag>, so that
`skopeo copy oci:OUTDIR:<repo>:<tag> ...` reads it.

Next to the layout files it writes:

  OUTDIR/images.txt   one <repo>:<tag> per line
  OUTDIR/blobs.tsv    every unique blob once, manifests and indexes included:
                      <repo> TAB <manifest|blob> TAB <digest> TAB <size> TAB
                      <media type>, where <repo> is a repository that holds
                      it (for fetching /v2/<repo>/manifests|blobs/<digest>)
  OUTDIR/corpus.json  summary: size asked, tags, blob count, total bytes

What the corpus has:
  - a Photon OS base layer (and a package layer) shared by every goharbor
    amd64 image, an nginx layer shared by nginx-photon and harbor-portal, a
    registry binary layer shared by registry-photon and harbor-registryctl,
    a static-site layer shared by both platforms of harbor-portal;
  - two multi-platform OCI image indexes (linux/amd64 + linux/arm64/v8):
    goharbor/harbor-portal and library/alpine;
  - one uncompressed layer (application/vnd.oci.image.layer.v1.tar) in
    goharbor/registry-photon;
  - layers from a few KB to about 150 MB (at the default size; big files
    scale with --size-mb, small ones do not);
  - file contents that are mostly pseudo-random (SHAKE-128 of a fixed label
    and a counter), so neither gzip nor zstd can shrink them, plus a little
    text.  Layers are real tar archives (fixed names, owners, modes and
    times), gzip level 1 with a fixed header.

The output is the same, byte for byte, for the same --size-mb.  Layers are
generated in parallel (--jobs, default: the number of CPUs).  The layout
is built in OUTDIR.partial and renamed into place at the end; an existing
OUTDIR is refused unless --force is given (then it is replaced).
"""

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import struct
import sys
import tarfile
import time
import zlib

MTIME = 1622505600  # 2021-06-01T00:00:00Z, every tar entry
CREATED = "2021-06-01T00:00:00Z"
TAG = "v2.3.0"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

CHUNK = 1 << 20
MB = 1000 * 1000
# Files at least this big (at the reference size of 1000 MB) are scaled.
SCALE_MIN = 64 * 1024
# A scaled file never gets smaller than this.
SCALED_FLOOR = 4096


# ------------------------------------------------------------------ layers
#
# A layer is a list of entries (path, kind, size, mode):
#   kind "dir"   directory (size unused)
#   kind "noise" incompressible file of `size` bytes (at 1000 MB)
#   kind "text"  compressible text file of `size` bytes
#   kind "link"  symbolic link; `size` is the target

def D(path):
    return (path, "dir", 0, 0o755)


def N(path, size, mode=0o755):
    return (path, "noise", int(size), mode)


def T(path, size, mode=0o644):
    return (path, "text", int(size), mode)


def L(path, target):
    return (path, "link", target, 0o777)


def spread(prefix, names, total):
    """Files named prefix+name whose sizes add up to `total`, unevenly."""
    weights = [((i * 7919) % 13) + 3 for i in range(len(names))]
    s = sum(weights)
    return [N(prefix + n, total * w // s) for n, w in zip(names, weights)]


def photon_base(arch, total):
    libs = ["libc.so.6", "libm.so.6", "libstdc++.so.6", "libcrypto.so.3", "libssl.so.3",
            "libsqlite3.so.0", "libz.so.1", "libzstd.so.1", "liblzma.so.5", "libpcre2-8.so.0",
            "libsystemd.so.0", "libcurl.so.4", "libxml2.so.2", "libgcrypt.so.20", "libkrb5.so.3",
            "libncursesw.so.6", "libreadline.so.8", "libgnutls.so.30", "libp11-kit.so.0",
            "libicuuc.so.72", "libicudata.so.72", "libelf.so.1", "libselinux.so.1", "libcap.so.2"]
    bins = ["bash", "coreutils", "tdnf", "rpm", "grep", "sed", "gawk", "tar", "gzip",
            "findutils", "util-linux", "procps", "shadow", "openssl", "curl", "python3.10"]
    return ([D("bin"), D("etc"), D("lib"), D("root"), D("tmp"), D("usr"), D("usr/bin"),
             D("usr/lib"), D("usr/share"), D("var"), D("var/lib"), D("var/lib/rpm"),
             T("etc/os-release", 180, 0o644), T("etc/photon-release", 60, 0o644),
             T("etc/passwd", 400, 0o644), T("etc/group", 300, 0o644),
             T("usr/share/licenses.txt", 250000)]
            + spread("usr/lib/", libs, total * 55 // 100)
            + spread("usr/bin/", bins, total * 30 // 100)
            + [N("var/lib/rpm/rpmdb.sqlite", total * 15 // 100, 0o644),
               L("bin/sh", "../usr/bin/bash"), L("lib64", "usr/lib")])


def photon_pkgs(total):
    return ([D("etc"), D("etc/pki"), D("etc/pki/tls"), D("usr"), D("usr/share"),
             D("usr/share/zoneinfo"), T("etc/pki/tls/certs.pem", 210000)]
            + spread("usr/share/zoneinfo/", ["Africa", "America", "Antarctica", "Asia",
                                            "Atlantic", "Australia", "Europe", "Indian",
                                            "Pacific", "posixrules"], total * 20 // 100)
            + spread("usr/lib/", ["libshadow.so", "libaudit.so.1", "libpam.so.0",
                                  "libnss3.so", "libsoftokn3.so"], total * 80 // 100))


def go_binary(path, total, extra=()):
    """A Go service: one big static binary plus a few small files."""
    top = path.split("/")[0]
    return [D(top), N(path, total)] + list(extra)


def conf(dir_, files):
    return [D(dir_.split("/")[0])] + ([D(dir_)] if "/" in dir_ else []) + \
        [T(dir_ + "/" + name, size) for name, size in files]


def nginx(arch, total):
    return [D("usr"), D("usr/sbin"), D("usr/lib"), D("etc"), D("etc/nginx"),
            N("usr/sbin/nginx", total * 70 // 100),
            N("usr/lib/libnginx-modules-%s.so" % arch, total * 30 // 100),
            T("etc/nginx/nginx.conf", 3000), T("etc/nginx/mime.types", 5200)]


def alpine(arch, total):
    return [D("bin"), D("etc"), D("lib"), D("usr"), D("usr/bin"), D("tmp"),
            T("etc/os-release", 170), T("etc/alpine-release", 7),
            N("bin/busybox", total * 30 // 100),
            N("lib/ld-musl-%s.so.1" % arch, total * 25 // 100),
            N("lib/libcrypto.so.1.1", total * 30 // 100),
            N("lib/libssl.so.1.1", total * 10 // 100),
            N("lib/apk.db", total * 5 // 100, 0o644),
            L("bin/sh", "/bin/busybox"), L("usr/bin/env", "/bin/busybox")]


def layer_defs():
    """name -> (entries, gzip-compressed?).  Sizes are for the 1000 MB corpus."""
    M = MB
    d = {}
    d["photon-amd64"] = (photon_base("x86_64", 46 * M), True)
    d["photon-arm64"] = (photon_base("aarch64", 40 * M), True)
    d["photon-pkgs-amd64"] = (photon_pkgs(20 * M), True)

    d["harbor-core-bin"] = (go_binary("harbor/harbor_core", 82 * M, [
        T("harbor/entrypoint.sh", 120), T("harbor/install_cert.sh", 900)]), True)
    d["harbor-core-migrations"] = ([D("harbor"), D("harbor/migrations")] + spread(
        "harbor/migrations/", ["0010_1.9.0_schema.up.sql", "0015_1.10.0_schema.up.sql",
                               "0030_2.0.0_schema.up.sql", "0040_2.1.0_schema.up.sql",
                               "0050_2.2.0_schema.up.sql", "0060_2.3.0_schema.up.sql"],
        7 * M), True)
    d["harbor-core-views"] = ([D("harbor"), D("harbor/views")]
                              + [T("harbor/views/%s.tpl" % n, 6000 + 900 * i)
                                 for i, n in enumerate(["404", "index", "reset", "error"])], True)
    d["harbor-core-conf"] = (conf("etc/core", [("app.conf", 180), ("key", 16)]), True)

    d["harbor-jobservice-bin"] = (go_binary("harbor/harbor_jobservice", 64 * M, [
        T("harbor/entrypoint.sh", 140)]), True)
    d["harbor-jobservice-conf"] = (conf("etc/jobservice", [("config.yml", 2500)]), True)

    d["nginx-amd64"] = (nginx("amd64", 3500000), True)
    d["nginx-arm64"] = (nginx("arm64", 3200000), True)
    d["portal-static"] = ([D("usr"), D("usr/share"), D("usr/share/nginx"),
                           D("usr/share/nginx/html"), T("usr/share/nginx/html/index.html", 4200)]
                          + spread("usr/share/nginx/html/",
                                   ["main.js", "vendor.js", "polyfills.js", "styles.css",
                                    "swagger-ui.js", "logo.svg", "i18n.tar"], 24 * M), True)
    d["portal-conf"] = (conf("etc/nginx", [("nginx.conf", 1800)]), True)

    d["postgres"] = ([D("usr"), D("usr/local"), D("usr/local/pgsql"),
                      D("usr/local/pgsql/bin"), D("usr/local/pgsql/lib")]
                     + spread("usr/local/pgsql/bin/", ["postgres", "pg_dump", "pg_restore",
                                                       "psql", "initdb", "pg_upgrade"], 62 * M)
                     + spread("usr/local/pgsql/lib/", ["libpq.so.5", "plpgsql.so", "llvmjit.so",
                                                       "libLLVM-12.so"], 88 * M), True)
    d["postgres-locale"] = ([D("usr"), D("usr/share"), D("usr/share/locale")]
                            + spread("usr/share/locale/", ["de", "en", "es", "fr", "it", "ja",
                                                           "ko", "pt_BR", "ru", "zh_CN",
                                                           "locale-archive"], 55 * M), True)
    d["harbor-db-init"] = (conf("docker-entrypoint-initdb.d",
                                [("initial-registry.sql", 14000), ("upgrade.sh", 3200),
                                 ("docker-healthcheck.sh", 300)]), True)

    d["registry-bin"] = (go_binary("usr/bin/registry_DO_NOT_USE_GC", 36 * M), True)
    # The uncompressed one (application/vnd.oci.image.layer.v1.tar).
    d["registry-conf-tar"] = ([D("etc"), D("etc/registry"), D("home"), D("home/harbor"),
                               T("etc/registry/config.yml", 40000),
                               T("home/harbor/install_cert.sh", 400),
                               N("home/harbor/ca-bundle.bin", 6 * M, 0o644)], False)
    d["registryctl-bin"] = (go_binary("home/harbor/harbor_registryctl", 40 * M, [
        T("home/harbor/start.sh", 300)]), True)
    d["registryctl-conf"] = (conf("etc/registryctl", [("config.yml", 700)]), True)

    d["nginx-photon-conf"] = (conf("etc/nginx", [("nginx.conf", 5200)]), True)
    d["redis-bin"] = ([D("usr"), D("usr/bin"), N("usr/bin/redis-server", 11 * M),
                       N("usr/bin/redis-cli", 5 * M), N("usr/bin/redis-benchmark", 2 * M)], True)
    d["redis-conf"] = (conf("etc/redis", [("redis.conf", 42000)]), True)

    d["trivy-bin"] = (go_binary("usr/local/bin/trivy", 141 * M), True)
    d["trivy-db"] = ([D("home"), D("home/scanner"), D("home/scanner/.cache"),
                      D("home/scanner/.cache/trivy"), D("home/scanner/.cache/trivy/db"),
                      N("home/scanner/.cache/trivy/db/trivy.db", 118 * M, 0o644),
                      T("home/scanner/.cache/trivy/db/metadata.json", 140)], True)
    d["trivy-adapter-bin"] = (go_binary("home/scanner/scanner-trivy", 34 * M, [
        T("home/scanner/entrypoint.sh", 200)]), True)

    d["exporter-bin"] = (go_binary("harbor/harbor_exporter", 44 * M, [
        T("harbor/entrypoint.sh", 150)]), True)
    d["exporter-conf"] = (conf("etc/exporter", [("env", 600)]), True)

    d["alpine-amd64"] = (alpine("x86_64", 2800000), True)
    d["alpine-arm64"] = (alpine("aarch64", 2650000), True)
    return d


def images():
    """tag -> list of (os, arch, variant, [layer names], cmd)."""
    base = ["photon-amd64", "photon-pkgs-amd64"]
    g = "goharbor/"
    one = lambda layers, cmd: [("linux", "amd64", None, layers, cmd)]  # noqa: E731
    return {
        g + "harbor-core:" + TAG: one(
            base + ["harbor-core-bin", "harbor-core-migrations", "harbor-core-views",
                    "harbor-core-conf"], ["/harbor/entrypoint.sh"]),
        g + "harbor-jobservice:" + TAG: one(
            base + ["harbor-jobservice-bin", "harbor-jobservice-conf"], ["/harbor/entrypoint.sh"]),
        g + "harbor-portal:" + TAG: [
            ("linux", "amd64", None,
             ["photon-amd64", "nginx-amd64", "portal-static", "portal-conf"],
             ["nginx", "-g", "daemon off;"]),
            ("linux", "arm64", "v8",
             ["photon-arm64", "nginx-arm64", "portal-static", "portal-conf"],
             ["nginx", "-g", "daemon off;"])],
        g + "harbor-db:" + TAG: one(
            base + ["postgres", "postgres-locale", "harbor-db-init"],
            ["/docker-entrypoint.sh", "96", "13"]),
        g + "harbor-registryctl:" + TAG: one(
            base + ["registry-bin", "registryctl-bin", "registryctl-conf"],
            ["/home/harbor/start.sh"]),
        g + "registry-photon:" + TAG: one(
            base + ["registry-bin", "registry-conf-tar"],
            ["/home/harbor/entrypoint.sh"]),
        g + "nginx-photon:" + TAG: one(
            ["photon-amd64", "nginx-amd64", "nginx-photon-conf"], ["nginx", "-g", "daemon off;"]),
        g + "redis-photon:" + TAG: one(
            base + ["redis-bin", "redis-conf"], ["redis-server", "/etc/redis.conf"]),
        g + "trivy-adapter-photon:" + TAG: one(
            base + ["trivy-bin", "trivy-db", "trivy-adapter-bin"],
            ["/home/scanner/entrypoint.sh"]),
        g + "harbor-exporter:" + TAG: one(
            base + ["exporter-bin", "exporter-conf"], ["/harbor/entrypoint.sh"]),
        "library/alpine:3.14": [
            ("linux", "amd64", None, ["alpine-amd64"], ["/bin/sh"]),
            ("linux", "arm64", "v8", ["alpine-arm64"], ["/bin/sh"])],
    }


# ------------------------------------------------------------------ sizes

def scale_factor(defs, size_mb):
    """Factor for the big files so that the blobs add up to about size_mb MB."""
    big = fixed = 0
    for entries, _ in defs.values():
        for _path, kind, size, _mode in entries:
            if kind in ("noise", "text"):
                if size >= SCALE_MIN:
                    big += size
                else:
                    fixed += size
                fixed += 1024  # tar header and padding, roughly
            else:
                fixed += 512
    fixed += 64 * 1024  # manifests, configs, indexes
    want = size_mb * MB
    if want <= fixed:
        return 0.0
    return (want - fixed) / big


def scaled(size, factor):
    if size < SCALE_MIN:
        return size
    return max(SCALED_FLOOR, int(size * factor))


# ------------------------------------------------------------------ writing

def noise_chunks(label, size):
    """Incompressible bytes, a pure function of (label, size), in 1 MiB pieces."""
    seed = b"ferry bench corpus\0" + label.encode() + b"\0"
    i = 0
    left = size
    while left > 0:
        n = min(CHUNK, left)
        yield hashlib.shake_128(seed + str(i).encode()).digest(n)
        left -= n
        i += 1


def text_bytes(label, size):
    line = ("%s: the quick brown fox jumps over the lazy dog 0123456789\n" % label).encode()
    reps = size // len(line) + 1
    return (line * reps)[:size]


class BlobSink:
    """Takes the uncompressed tar stream; writes the blob, hashing both forms."""

    def __init__(self, path, compress):
        self.fh = open(path, "wb")
        self.compress = compress
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.size = 0
        self.usize = 0
        self.crc = 0
        if compress:
            self.comp = zlib.compressobj(1, zlib.DEFLATED, -15, 8)
            # gzip header: no name, mtime 0, no extra flags, OS unknown.
            self._out(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")

    def _out(self, data):
        if data:
            self.blob.update(data)
            self.fh.write(data)
            self.size += len(data)

    def write(self, data):
        self.diff.update(data)
        self.usize += len(data)
        if self.compress:
            self.crc = zlib.crc32(data, self.crc)
            self._out(self.comp.compress(data))
        else:
            self._out(data)

    def close(self):
        if self.compress:
            self._out(self.comp.flush())
            self._out(struct.pack("<II", self.crc & 0xFFFFFFFF, self.usize & 0xFFFFFFFF))
        self.fh.close()


def tar_header(path, kind, size, mode):
    ti = tarfile.TarInfo(path)
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mode = mode
    if kind == "dir":
        ti.type = tarfile.DIRTYPE
    elif kind == "link":
        ti.type = tarfile.SYMTYPE
        ti.linkname = size
    else:
        ti.size = size
    return ti.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def make_layer(job):
    """Worker: write one layer blob; return (name, digest, size, diff_id)."""
    outdir, name, entries, compress, factor = job
    tmp = os.path.join(outdir, "blobs", "sha256", ".tmp-" + name)
    sink = BlobSink(tmp, compress)
    for path, kind, size, mode in entries:
        if kind in ("noise", "text"):
            size = scaled(size, factor)
        sink.write(tar_header(path, kind, size, mode))
        if kind == "noise":
            for chunk in noise_chunks(name + "/" + path, size):
                sink.write(chunk)
        elif kind == "text":
            sink.write(text_bytes(name + "/" + path, size))
        if kind in ("noise", "text") and size % 512:
            sink.write(b"\0" * (512 - size % 512))
    # End of archive, padded to a whole record as tar(1) does.
    end = 1024
    total = sink.usize + end
    if total % tarfile.RECORDSIZE:
        end += tarfile.RECORDSIZE - total % tarfile.RECORDSIZE
    sink.write(b"\0" * end)
    sink.close()
    hexd = sink.blob.hexdigest()
    os.replace(tmp, os.path.join(outdir, "blobs", "sha256", hexd))
    return name, "sha256:" + hexd, sink.size, "sha256:" + sink.diff.hexdigest()


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()


class Layout:
    def __init__(self, root):
        self.root = root
        self.sizes = {}

    def add(self, data):
        hexd = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.root, "blobs", "sha256", hexd), "wb") as fh:
            fh.write(data)
        self.sizes["sha256:" + hexd] = len(data)
        return "sha256:" + hexd, len(data)


def build(outdir, size_mb, jobs, log):
    defs = layer_defs()
    factor = scale_factor(defs, size_mb)
    tags = images()
    used = []
    for plats in tags.values():
        for _os, _arch, _var, layers, _cmd in plats:
            for name in layers:
                if name not in defs:
                    raise SystemExit("gen_corpus: unknown layer %s" % name)
                if name not in used:
                    used.append(name)
    # Biggest first, so that the pool ends at about the same time.
    def weight(name):
        return sum(scaled(e[2], factor) for e in defs[name][0] if e[1] in ("noise", "text"))
    order = sorted(used, key=weight, reverse=True)
    work = [(outdir, name, defs[name][0], defs[name][1], factor) for name in order]

    layers = {}
    t0 = time.time()
    if jobs > 1:
        with multiprocessing.Pool(jobs) as pool:
            for name, digest, size, diff_id in pool.imap_unordered(make_layer, work):
                layers[name] = (digest, size, diff_id)
                log("  layer %-24s %12d bytes  %s" % (name, size, digest[:19]))
    else:
        for job in work:
            name, digest, size, diff_id = make_layer(job)
            layers[name] = (digest, size, diff_id)
            log("  layer %-24s %12d bytes  %s" % (name, size, digest[:19]))
    log("gen_corpus: %d layers in %.1fs" % (len(layers), time.time() - t0))

    lay = Layout(outdir)
    for digest, size, _ in layers.values():
        lay.sizes[digest] = size

    def image(repo, os_, arch, variant, names, cmd):
        descs, diff_ids, history = [], [], []
        for name in names:
            digest, size, diff_id = layers[name]
            mt = MT_LAYER_GZIP if defs[name][1] else MT_LAYER_TAR
            descs.append({"mediaType": mt, "digest": digest, "size": size})
            diff_ids.append(diff_id)
            history.append({"created": CREATED,
                            "created_by": "/bin/sh -c #(nop) ADD %s.tar /" % name})
        config = {"created": CREATED, "architecture": arch}
        if variant:
            config["variant"] = variant
        config["os"] = os_
        config["config"] = {
            "User": "10000:10000" if repo.startswith("goharbor/") else "",
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd,
            "WorkingDir": "/",
            "Labels": {"org.opencontainers.image.title": repo.split("/")[-1],
                       "org.opencontainers.image.version": TAG,
                       "org.opencontainers.image.vendor": "ferry benchmark corpus"},
        }
        config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        config["history"] = history
        cdigest, csize = lay.add(dumps(config))
        manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                    "config": {"mediaType": MT_CONFIG, "digest": cdigest, "size": csize},
                    "layers": descs}
        mdigest, msize = lay.add(dumps(manifest))
        platform = {"architecture": arch, "os": os_}
        if variant:
            platform["variant"] = variant
        return {"mediaType": MT_MANIFEST, "digest": mdigest, "size": msize,
                "platform": platform}

    index_manifests = []
    for ref in sorted(tags):
        repo = ref.rsplit(":", 1)[0]
        plats = tags[ref]
        if len(plats) == 1:
            desc = image(repo, *plats[0])
            desc.pop("platform")
        else:
            children = [image(repo, *p) for p in plats]
            idigest, isize = lay.add(dumps({"schemaVersion": 2, "mediaType": MT_INDEX,
                                            "manifests": children}))
            desc = {"mediaType": MT_INDEX, "digest": idigest, "size": isize}
        desc["annotations"] = {REF_ANNOTATION: ref}
        index_manifests.append(desc)

    with open(os.path.join(outdir, "oci-layout"), "wb") as fh:
        fh.write(dumps({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(outdir, "index.json"), "wb") as fh:
        fh.write(dumps({"schemaVersion": 2, "mediaType": MT_INDEX,
                        "manifests": index_manifests}))
    return sorted(tags)


def list_blobs(outdir):
    """Walk the layout from index.json: every unique blob once, as rows."""
    def load(digest):
        with open(os.path.join(outdir, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as fh:
            return json.loads(fh.read())

    with open(os.path.join(outdir, "index.json"), "rb") as fh:
        index = json.load(fh)
    rows, seen = [], set()

    def add(repo, kind, desc):
        if desc["digest"] in seen:
            return
        seen.add(desc["digest"])
        rows.append((repo, kind, desc["digest"], desc["size"], desc["mediaType"]))

    def walk(repo, desc):
        add(repo, "manifest", desc)
        doc = load(desc["digest"])
        if desc["mediaType"] == MT_INDEX:
            for child in doc["manifests"]:
                walk(repo, child)
        else:
            add(repo, "blob", doc["config"])
            for layer in doc["layers"]:
                add(repo, "blob", layer)

    for desc in index["manifests"]:
        walk(desc["annotations"][REF_ANNOTATION].rsplit(":", 1)[0], desc)
    return rows


def main(argv):
    ap = argparse.ArgumentParser(description="Generate ferry's benchmark corpus (an OCI layout).")
    ap.add_argument("outdir")
    ap.add_argument("--size-mb", type=int, default=1000,
                    help="total size of the blobs in MB of 10^6 bytes (default 1000)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="layers generated in parallel (default: CPUs)")
    ap.add_argument("--force", action="store_true", help="replace an existing OUTDIR")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv[1:])
    if args.size_mb < 1:
        ap.error("--size-mb must be at least 1")

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    outdir = os.path.abspath(args.outdir)
    if os.path.lexists(outdir):
        if not args.force:
            ap.error("%s exists (use --force to replace it)" % outdir)
    partial = outdir + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(os.path.join(partial, "blobs", "sha256"))
    t0 = time.time()
    try:
        tags = build(partial, args.size_mb, max(1, args.jobs), log)
        rows = list_blobs(partial)
        total = sum(r[3] for r in rows)
        with open(os.path.join(partial, "images.txt"), "w") as fh:
            fh.write("".join(t + "\n" for t in tags))
        with open(os.path.join(partial, "blobs.tsv"), "w") as fh:
            fh.write("".join("%s\t%s\t%s\t%d\t%s\n" % r for r in rows))
        with open(os.path.join(partial, "corpus.json"), "w") as fh:
            json.dump({"size_mb": args.size_mb, "tags": len(tags), "blobs": len(rows),
                       "bytes": total}, fh)
            fh.write("\n")
        on_disk = sum(os.path.getsize(os.path.join(partial, "blobs", "sha256", r[2][7:]))
                      for r in rows)
        if on_disk != total or len(os.listdir(os.path.join(partial, "blobs", "sha256"))) != len(rows):
            raise SystemExit("gen_corpus: internal error: layout and blob list disagree")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if os.path.lexists(outdir):
        shutil.rmtree(outdir)
    os.rename(partial, outdir)
    log("gen_corpus: %d tags, %d blobs, %d bytes (%.1f MB) in %s, %.1fs"
        % (len(tags), len(rows), total, total / MB, outdir, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
