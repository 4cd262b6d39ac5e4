# Sourced by in-trixie.sh and two-nodes.sh, which both make the trixie root
# the root of a mount namespace. Not run.

# bind_at_host_paths ROOT DIR...: each DIR that exists, bound at its own path
# inside ROOT (the worktree, the guest images: test binaries have their
# paths baked in).
bind_at_host_paths() {
  local root=$1 p
  shift
  for p in "$@"; do
    [ -n "$p" ] && [ -d "$p" ] || continue
    mkdir -p "$root$p"
    mount --bind "$p" "$root$p"
  done
}

# pivot_into ROOT: ROOT, a mount point, becomes this mount namespace's root.
# pivot_root(".", "."): the old root ends up stacked under the new one and
# is detached at once; no directory for it is needed in the root.
pivot_into() {
  cd "$1"
  pivot_root . .
  umount -l .
  cd /
}
