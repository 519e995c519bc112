# shellcheck shell=bash
# What hack/build-containerd.sh, hack/build-k8s.sh and hack/build-promtool.sh share: their arguments, the
# cache directory, the version a wrapper module pins, a lock per script and the build itself. Source it from
# the repository's root after `set -euo pipefail`, then call `build_init <script name> <help lines> "$@"`.

# Reads the script's arguments (--force, -h/--help); sets `script`, `force`, `cache` and `hack`.
build_init() {
  script=$1
  local help=$2 arg
  shift 2
  force=0
  for arg in "$@"; do
    case $arg in
      --force) force=1 ;;
      -h | --help) sed -n "${help}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) echo "$script: unknown argument: $arg" >&2; exit 2 ;;
    esac
  done
  hack=$PWD/hack
  cache=${NODE_JANITOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/node-janitor}
  export GOTOOLCHAIN=local CGO_ENABLED=0
  mkdir -p "$cache"
}

# Holds this script's lock until it exits: a second session waits for the first one's build instead of
# repeating it, while another script's build may go on beside it.
build_lock() {
  exec 9>"$cache/.$1.lock"
  flock 9
}

# The version wrapper module `dir` requires of `module`: its `require` line in go.mod.
modver() {
  local v
  v=$(awk -v m="$2" '($1 == "require" && $2 == m) {print $3} ($1 == m && $2 ~ /^v/) {print $2}' "$1/go.mod" | head -n1)
  [ -n "$v" ] || { echo "$script: $2 not found in $1/go.mod" >&2; exit 1; }
  echo "$v"
}

# build DIR TAGS LDFLAGS [COMPONENT/]NAME=PACKAGE@VERSION...: builds the packages of wrapper module DIR that
# are not in the cache yet (all of them with --force) into a temporary directory, then moves each binary to
# $cache/COMPONENT-VERSION/NAME (COMPONENT defaults to NAME), so an interrupted build never leaves a
# half-written binary where the beds look.
build() {
  local dir=$1 tags=$2 ldflags=$3
  shift 3
  local todo=() names=() spec name component pkg version
  for spec in "$@"; do
    name=${spec%%=*}; pkg=${spec#*=}; version=${pkg##*@}; pkg=${pkg%@*}
    component=${name%%/*}; name=${name##*/}
    if [ "$force" = 1 ] || [ ! -x "$cache/$component-$version/$name" ]; then
      todo+=("$pkg"); names+=("$component-$version/$name")
    fi
  done
  [ ${#todo[@]} -gt 0 ] || return 0
  local tmp start i
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  start=$SECONDS
  echo "$script: building ${names[*]} (a cold build takes minutes)" >&2
  (cd "$dir" && go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$tmp/" "${todo[@]}")
  for i in "${!todo[@]}"; do
    # `go build` names a binary after the package's last path element, or the one before a /vN suffix
    local base=${todo[$i]##*/} parent=${todo[$i]%/*}
    [[ $base =~ ^v[0-9]+$ ]] && base=${parent##*/}
    mkdir -p "$(dirname "$cache/${names[$i]}")"
    mv -f "$tmp/$base" "$cache/${names[$i]}"
  done
  rm -rf "$tmp"
  echo "$script: built ${names[*]} in $((SECONDS - start))s" >&2
}
