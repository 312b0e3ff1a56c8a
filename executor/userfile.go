package executor

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openAsUser opens path with the file-system identity of uid/gid/groups, so
// the kernel checks the user's permissions and not root's: a job must not be
// able to write /etc/passwd through --output.
func openAsUser(path string, flag int, perm os.FileMode, uid, gid uint32, groups []uint32) (*os.File, error) {
	var f *os.File
	err := asUser(uid, gid, groups, func() error {
		var err error
		f, err = os.OpenFile(path, flag, perm)
		return err
	})
	return f, err
}

// asUser runs fn with the file-system identity of uid/gid/groups (fsuid,
// fsgid, supplementary groups; the kernel also drops root's file
// capabilities). The credentials are changed on one locked OS thread only,
// and that thread is never unlocked, so Go terminates it when the goroutine
// ends and the changed identity can never run other goroutines.
func asUser(uid, gid uint32, groups []uint32, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// syscall.Setgroups would change every thread of the process; the raw
		// system calls below change only this one.
		gids := make([]uint32, len(groups))
		copy(gids, groups)
		var p unsafe.Pointer
		if len(gids) > 0 {
			p = unsafe.Pointer(&gids[0])
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(p), 0); e != 0 {
			ch <- &os.SyscallError{Syscall: "setgroups", Err: e}
			return
		}
		// setfsuid/setfsgid report no errors; they are verified below.
		unix.RawSyscall(unix.SYS_SETFSGID, uintptr(gid), 0, 0)
		unix.RawSyscall(unix.SYS_SETFSUID, uintptr(uid), 0, 0)
		cur, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0)
		curg, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0)
		if uint32(cur) != uid || uint32(curg) != gid {
			ch <- &os.SyscallError{Syscall: "setfsuid", Err: unix.EPERM}
			return
		}
		ch <- fn()
	}()
	return <-ch
}
