#!/usr/bin/env python3
"""The stated MSRV (Cargo.toml rust-version) must be at least every dependency's, and the
toolchain here must meet it. Only one toolchain can be had on this machine, so the MSRV is
checked against the dependency graph rather than by building with an older compiler."""
import json
import subprocess
import sys


def version(v):
    return tuple(int(x) for x in v.split("."))


meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--locked"]))
ours = next(p for p in meta["packages"] if p["name"] == "etcd-bootstrap")
stated = ours["rust_version"]
worst = max(((p["rust_version"], p["name"]) for p in meta["packages"] if p.get("rust_version") and p["name"] != ours["name"]),
            key=lambda t: version(t[0]))
rustc = subprocess.check_output(["rustc", "--version"], text=True).split()[1]
print(f"MSRV stated {stated}; highest among dependencies {worst[0]} ({worst[1]}); rustc here {rustc}")
if version(stated) < version(worst[0]):
    sys.exit(f"rust-version {stated} is below {worst[1]}'s {worst[0]}")
if version(rustc.split("-")[0]) < version(stated):
    sys.exit(f"rustc {rustc} is older than the stated MSRV {stated}")
