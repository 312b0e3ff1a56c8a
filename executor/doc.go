// Package executor runs one batch job attempt in a container through
// libcontainer (runc's library), owned by a per-job shim process, with cgroup
// v1 limits and metering.
//
// # The shim
//
// Launch writes <jobDir>/spec.json and starts `<this binary> shim <jobDir>`
// (RunShim) with setsid and in a new mount namespace, its stdio going to
// <jobDir>/shim.log. The shim makes itself a child subreaper, writes
// shim.pid ("pid starttime", so a reused pid is never mistaken for it),
// starts the container and tells Launch "ok" (or why not) over a pipe;
// Launch returns then. From there on the shim alone owns the job: it is the
// container init's parent, the job's stdout/stderr are files it opened, and
// nothing is connected to the agent. If the agent is killed, the shim and the
// job carry on, and any process can later read the job directory:
//
//	spec.json    the Spec
//	shim.pid     the shim's pid and start time
//	shim.log     the shim's and libcontainer's messages
//	usage.json   the latest usage sample (at start, then every 10 s)
//	result.json  the Result, written atomically (tmp, fsync, rename) when the
//	             job is over; the shim exits right after
//	cancel       Cancel's marker, for a shim that was not listening yet;
//	             Stop writes its grace period in it
//	job-script   the script, bind-mounted read-only at ScriptPath
//	lc/          libcontainer's state
//	rootfs/      host mode: an empty directory (see below)
//
// When the job's init exits, the shim reads Stats() and the memory cgroup's
// oom_kill counter before Destroy, then writes result.json. A time limit or a
// Cancel (SIGTERM to the shim) sends SIGTERM to every process of the
// container and SIGKILL after the grace period (the spec's KillGrace, or a
// Stop's own); the shim records TIMEOUT or CANCELLED itself, since a pid
// namespace's init may ignore SIGTERM and the exit code alone cannot tell. An OOM kill is recognised by the counter, not
// the exit code: the killed process is often a child of a script that then
// exits 0.
//
// # File systems
//
// Without an image the job sees the node's own root file system. runc cannot
// take "/" itself as the rootfs (pivot_root and MS_MOVE refuse the current
// root), so the shim, in its private mount namespace (slave to the host's, so
// later host mounts still appear), rbinds "/" onto <jobDir>/rootfs and gives
// runc that. The mount exists only in the shim's and the container's
// namespaces and disappears with them; on the host, rootfs/ stays an empty
// directory. Over it the container gets a private tmpfs /tmp and /dev/shm, a
// fresh /proc (own pid namespace), a minimal /dev and a read-only /sys.
//
// With an image (OCI layout, OCI archive or docker-save tarball) the
// flattened root file system is unpacked once into ImageCacheDir/<digest>
// and used read-only by every job.
//
// # Confinement
//
// The job runs as the user's uid, gid and supplementary groups, with no
// capabilities at all, no_new_privs and Docker's default seccomp profile, in
// new mount, pid, ipc and uts namespaces (the network is the host's unless
// Spec.NetNSPath is given), under /stockade/job_<id>_<attempt> in every v1
// controller. Output files are opened by the shim with the user's
// file-system identity, never as root.
package executor
