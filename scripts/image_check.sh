#!/usr/bin/env bash
# make image-check: builds the Dockerfile with podman and runs the image the way a KFP step and a
# user would, writing benchmarks/results/image_results.json (size, build time, smoke run) for the
# README. Not part of `make test` (minutes, GBs of disk).
#
# The Dockerfile's base, python:3.10-slim-bookworm, cannot be pulled where this was written (no
# container registry), so when no such image is present a STAND-IN is built under its name from
# Debian's packages: debootstrap of Debian 12 (minbase) + the CPython 3.10 `make venv` uses, copied
# to /usr/local as the official image lays it out, no C compiler (the official slim image has
# none). It carries the label tfx-qat.stand-in=true, and the results file says which base was used.
#   scripts/image_check.sh PYTHON     (PYTHON: the venv's python; its base CPython is copied)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:?usage: $0 PYTHON}
BASE=docker.io/library/python:3.10-slim-bookworm
IMAGE=${IMAGE:-localhost/tfx-qat:check}
WORK=${IMAGE_CHECK_DIR:-$PWD/runs/image_check}
RESULTS=benchmarks/results/image_results.json
# These VMs: crun fails on the hybrid cgroups (runc works); `podman run` may not raise the open-file
# and process limits above the host's hard limits, which rootful podman asks for by default.
RUNTIME=(--runtime=runc)
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
TOOLS=(podman runc debootstrap fuse-overlayfs uidmap slirp4netns)

need_tools() {
  local missing=()
  for t in podman runc debootstrap; do command -v "$t" >/dev/null || missing+=("$t"); done
  [ ${#missing[@]} = 0 ] && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo ">> installing ${TOOLS[*]} (Debian packages)"
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${TOOLS[@]}" >/dev/null
  else
    echo "ERROR: make image-check needs ${missing[*]} (Debian: apt-get install ${TOOLS[*]})" >&2
    exit 1
  fi
}

debian_mirror() {  # the Debian mirror the host's apt uses (deb822 or one-line sources)
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } |
    grep -v security | head -1
}

standin_base() {
  local prefix rootfs=$WORK/rootfs
  prefix=$("$PY" -c 'import sys; print(sys.base_prefix)')
  echo ">> building a STAND-IN for $BASE: Debian 12 minbase + CPython from $prefix"
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  cp -r /etc/apt/sources.list* "$rootfs/etc/apt/"
  chroot "$rootfs" sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends \
    ca-certificates libssl3 libffi8 zlib1g libsqlite3-0 libbz2-1.0 liblzma5 libreadline8 \
    libncursesw6 libgdbm6 libuuid1 libexpat1 libnsl2 libtirpc3 netbase tzdata' >"$WORK/apt.log" 2>&1 ||
    { tail -20 "$WORK/apt.log" >&2; exit 1; }
  # CPython as the official image has it: /usr/local, no test suite, pip and setuptools only.
  cp -a "$prefix/bin" "$prefix/include" "$prefix/lib" "$rootfs/usr/local/"
  local sp=$rootfs/usr/local/lib/python3.10
  rm -rf "$sp/test" "$sp"/site-packages/_sandboxing* "$sp"/site-packages/README.txt
  find "$rootfs/usr/local" -name __pycache__ -prune -exec rm -rf {} +
  grep -rlI --exclude-dir=site-packages -e "$prefix" "$rootfs/usr/local/bin" "$sp"/_sysconfigdata* \
    "$sp"/config-3.10* "$rootfs/usr/local/lib/pkgconfig" | xargs sed -i "s#$prefix#/usr/local#g"
  for l in python:python3.10 python3:python3.10 pip:pip3.10 pip3:pip3.10; do
    ln -sf "${l#*:}" "$rootfs/usr/local/bin/${l%%:*}"; done
  chroot "$rootfs" ldconfig
  chroot "$rootfs" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, readline'
  # The official image cleans apt after every layer (docker-clean); so does the stand-in.
  printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
    'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' > "$rootfs/etc/apt/apt.conf.d/docker-clean"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* && : > "$rootfs/etc/resolv.conf"
  tar -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --change 'LABEL tfx-qat.stand-in=true' \
    --change "LABEL tfx-qat.stand-in.for=$BASE" - "$BASE" >/dev/null
  rm -rf "$rootfs"
}

main() {
  need_tools
  mkdir -p "$WORK"
  if ! podman image exists "$BASE"; then standin_base; fi
  local standin base_bytes
  standin=$(podman image inspect "$BASE" --format '{{index .Labels "tfx-qat.stand-in"}}')
  base_bytes=$(podman image inspect "$BASE" --format '{{.Size}}')
  # pip inside the build reaches the registry the host's pip reaches, with the host's pip
  # configuration and CA bundle mounted for the build only (not baked into a layer).
  local mounts=()
  [ -f /etc/pip.conf ] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
  [ -f /etc/ssl/certs/ca-certificates.crt ] &&
    mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  echo ">> podman build $IMAGE (no cache; log: $WORK/build.log)"
  local t0 t1
  t0=$(date +%s)
  podman build "${RUNTIME[@]}" --pull=never --no-cache --network=host "${mounts[@]}" \
    -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
  t1=$(date +%s)
  local run=(podman run --rm "${RUNTIME[@]}" "${LIMITS[@]}" --network=none)
  echo ">> smoke: --help, TFX's KFP v2 entrypoint, the digits pipeline to a push (no network)"
  "${run[@]}" "$IMAGE" --help >"$WORK/help.txt"
  "${run[@]}" --entrypoint python "$IMAGE" -c \
    'import tfx_qat.pipelines.kfp_entrypoint as e, tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor as m; print(e.MODULE, m.__name__)' \
    >"$WORK/entrypoint.txt"
  "${run[@]}" --entrypoint python "$IMAGE" -c "$(cat <<'EOF'
import json, os, site
sp = site.getsitepackages()[0]
def size(p):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs
               if not os.path.islink(os.path.join(d, f)))
tops = {n: size(os.path.join(sp, n)) for n in os.listdir(sp)}
print(json.dumps({"site_packages_bytes": sum(tops.values()),
                  "largest": sorted(tops.items(), key=lambda kv: -kv[1])[:6]}))
EOF
)" >"$WORK/sizes.json"
  rm -rf "$WORK/smoke" && mkdir -p "$WORK/smoke"
  local s0 s1
  s0=$(date +%s)
  "${run[@]}" -v "$WORK/smoke:/out" "$IMAGE" run --dataset digits --output-root /out/digits \
    >"$WORK/smoke.log" 2>&1 || { tail -40 "$WORK/smoke.log" >&2; exit 1; }
  s1=$(date +%s)
  podman image prune -f >/dev/null  # the build stage (the venv and the compiler)
  "$PY" -m benchmarks.image_results --work "$WORK" --out "$RESULTS" --image "$IMAGE" \
    --base "$BASE" --standin "${standin:-false}" --base-bytes "$base_bytes" \
    --image-bytes "$(podman image inspect "$IMAGE" --format '{{.Size}}')" \
    --build-seconds $((t1 - t0)) --smoke-seconds $((s1 - s0)) --podman "$(podman --version)"
}

main
