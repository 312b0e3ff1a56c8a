package cli

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Every CLI command is a new process, so without help every one would pay
// a full TLS handshake (key exchange, the controller's certificate chain
// and signature, verified against the cluster CA) and the controller
// would pay its half. sessionCache is the tls.ClientSessionCache of the
// CLI: it keeps the controllers' TLS 1.3 session tickets in a per-user
// file, so the next process resumes the session instead. It also
// remembers the leader a controller named (api.LeaderHeader), so the next
// process sends its writes straight to the leader.
//
// The file is $XDG_CACHE_HOME/stockade/tls-sessions (default
// ~/.cache/stockade/), mode 0600 in a 0700 directory: a ticket's secret
// lets whoever holds it pose as the controller to this user's next
// command, so the file is only read when it and its directory are the
// user's own and closed to others. Entries are per cluster CA (a new CA
// never resumes an old session) and per controller address, newest
// ticket only. Writes replace the file atomically (temporary file and
// rename), so concurrent commands of one user never corrupt it; the last
// writer wins. Anything wrong with the file (missing, corrupt, foreign,
// expired entries) means a full handshake, never an error: deleting the
// file is harmless. STOCKADE_SESSION_CACHE=off keeps the cache in memory.
type sessionCache struct {
	path string // "" = in memory only
	ca   string // hex SHA-256 of the cluster CA certificate (DER)
	now  func() time.Time

	mu   sync.Mutex
	file cacheFile
	// resumed holds the servers whose last handshake resumed the cached
	// session (api.HandshakeObserver).
	resumed map[string]bool
}

const (
	cacheFileName = "tls-sessions"
	cacheVersion  = 1
	// cacheMaxSize bounds what is read: a few tickets with their
	// certificate chains take a few kilobytes.
	cacheMaxSize = 256 << 10
	// cacheMaxAge drops entries older than the longest TLS 1.3 ticket
	// lifetime (RFC 8446: 7 days); crypto/tls also checks each ticket's
	// own lifetime before offering it.
	cacheMaxAge = 7 * 24 * time.Hour
	// The file keeps the newest few entries: one session per controller
	// of each cluster a user talks to, one leader per cluster.
	cacheMaxSessions = 16
	cacheMaxLeaders  = 4
	// cacheRefresh is how old a ticket that still resumes may get before
	// a newer one replaces it in the file. Controllers send a new ticket
	// on every connection; writing each would cost every command a file
	// creation and rename (on ext4 and network home directories, more
	// than the handshake it saves), while a Go server accepts a ticket
	// for 7 days.
	cacheRefresh = time.Hour
)

// cacheFile is the file's content. Its encoding (encode, decodeCacheFile)
// is binary, as parsing it is part of every command: cacheMagic and the
// version byte, then records, each a kind byte ('S' session, 'L' leader)
// and its fields, strings and byte strings prefixed by their length and
// times as seconds, all as uvarints.
type cacheFile struct {
	Version  int
	Sessions []cacheSession
	Leaders  []cacheLeader
}

type cacheSession struct {
	CA     string // cluster CA fingerprint
	Server string // the cache key: the controller's host:port
	Saved  int64  // Unix seconds
	Ticket []byte // tls.ClientSessionState.ResumptionState
	State  []byte // tls.SessionState.Bytes
}

type cacheLeader struct {
	CA     string
	Server string // host:port
	Saved  int64
}

const cacheMagic = "stockade-tls-cache\n"

func (f *cacheFile) encode() []byte {
	b := append([]byte(cacheMagic), byte(f.Version))
	str := func(v []byte) { b = binary.AppendUvarint(b, uint64(len(v))); b = append(b, v...) }
	for _, e := range f.Sessions {
		b = append(b, 'S')
		str([]byte(e.CA))
		str([]byte(e.Server))
		b = binary.AppendUvarint(b, uint64(e.Saved))
		str(e.Ticket)
		str(e.State)
	}
	for _, e := range f.Leaders {
		b = append(b, 'L')
		str([]byte(e.CA))
		str([]byte(e.Server))
		b = binary.AppendUvarint(b, uint64(e.Saved))
	}
	return b
}

// decodeCacheFile parses encode's output; ok is false for anything else.
// The byte strings alias data.
func decodeCacheFile(data []byte) (f cacheFile, ok bool) {
	rest, found := bytes.CutPrefix(data, []byte(cacheMagic))
	if !found || len(rest) == 0 {
		return f, false
	}
	f.Version, rest = int(rest[0]), rest[1:]
	bad := false
	num := func() uint64 {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			bad = true
			return 0
		}
		rest = rest[n:]
		return v
	}
	str := func() []byte {
		n := num()
		if bad || n > uint64(len(rest)) {
			bad = true
			return nil
		}
		v := rest[:n:n]
		rest = rest[n:]
		return v
	}
	for len(rest) > 0 && !bad {
		kind := rest[0]
		rest = rest[1:]
		ca, server := string(str()), string(str())
		saved := int64(num())
		switch kind {
		case 'S':
			ticket, state := str(), str()
			f.Sessions = append(f.Sessions, cacheSession{CA: ca, Server: server, Saved: saved, Ticket: ticket, State: state})
		case 'L':
			f.Leaders = append(f.Leaders, cacheLeader{CA: ca, Server: server, Saved: saved})
		default:
			bad = true
		}
	}
	return f, !bad
}

// caFingerprint identifies a cluster CA: the SHA-256 of its first
// certificate's DER, or of the whole PEM if it has none.
func caFingerprint(caPEM []byte) string {
	b := caPEM
	for rest := caPEM; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			b = blk.Bytes
			break
		}
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sessionCachePath is where the cache file lives: "" (memory only) when
// STOCKADE_SESSION_CACHE is off or no cache directory is known.
func sessionCachePath(getenv func(string) string, home string) string {
	switch getenv("STOCKADE_SESSION_CACHE") {
	case "off", "0", "false", "no", "none":
		return ""
	}
	dir := getenv("XDG_CACHE_HOME")
	if !filepath.IsAbs(dir) { // the XDG spec: relative paths are invalid
		if home == "" {
			return ""
		}
		dir = filepath.Join(home, ".cache")
	}
	return filepath.Join(dir, "stockade", cacheFileName)
}

// openSessionCache loads the cache for the cluster whose CA is caPEM from
// path ("" = memory only). It never fails: an unusable file is ignored.
func openSessionCache(path string, caPEM []byte) *sessionCache {
	c := &sessionCache{path: path, ca: caFingerprint(caPEM), now: time.Now}
	if path != "" {
		if f, ok := readCacheFile(path); ok {
			c.file = f
			c.prune()
		}
	}
	return c
}

// readCacheFile reads the file if it and its directory are this user's
// own and closed to others (see sessionCache).
func readCacheFile(path string) (cacheFile, bool) {
	var f cacheFile
	if !privateDir(filepath.Dir(path)) {
		return f, false
	}
	fd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return f, false
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 || !ownedByMe(fi) || fi.Size() > cacheMaxSize {
		return f, false
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(fd, data); err != nil {
		return f, false
	}
	if f, ok := decodeCacheFile(data); ok && f.Version == cacheVersion {
		return f, true
	}
	return cacheFile{}, false
}

// privateDir reports whether dir is a directory of this user's that
// others cannot write to (they could replace the file).
func privateDir(dir string) bool {
	fi, err := os.Lstat(dir)
	return err == nil && fi.IsDir() && fi.Mode().Perm()&0o022 == 0 && ownedByMe(fi)
}

func ownedByMe(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// prune drops expired entries and keeps the newest few. mu held or c not
// yet shared.
func (c *sessionCache) prune() {
	cutoff := c.now().Add(-cacheMaxAge).Unix()
	c.file.Sessions = slices.DeleteFunc(c.file.Sessions, func(s cacheSession) bool {
		return s.Saved < cutoff || s.Server == "" || len(s.Ticket) == 0 || len(s.State) == 0
	})
	c.file.Leaders = slices.DeleteFunc(c.file.Leaders, func(l cacheLeader) bool {
		return l.Saved < cutoff || l.Server == ""
	})
	newestFirst := func(a, b int64) int { return cmp.Compare(b, a) }
	if len(c.file.Sessions) > cacheMaxSessions {
		slices.SortStableFunc(c.file.Sessions, func(a, b cacheSession) int { return newestFirst(a.Saved, b.Saved) })
		c.file.Sessions = c.file.Sessions[:cacheMaxSessions]
	}
	if len(c.file.Leaders) > cacheMaxLeaders {
		slices.SortStableFunc(c.file.Leaders, func(a, b cacheLeader) int { return newestFirst(a.Saved, b.Saved) })
		c.file.Leaders = c.file.Leaders[:cacheMaxLeaders]
	}
}

// Get implements tls.ClientSessionCache; key is the controller's address
// (api.Options.OneShot keys sessions by host:port).
func (c *sessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.sessionIndex(key)
	if i < 0 {
		return nil, false
	}
	e := c.file.Sessions[i]
	state, err := tls.ParseSessionState(e.State)
	if err == nil {
		var cs *tls.ClientSessionState
		if cs, err = tls.NewResumptionState(e.Ticket, state); err == nil {
			return cs, true
		}
	}
	// Unparsable (say, written by another Go version): forget it; the
	// full handshake's ticket replaces it.
	c.file.Sessions = slices.Delete(c.file.Sessions, i, i+1)
	return nil, false
}

// ObserveHandshake implements api.HandshakeObserver.
func (c *sessionCache) ObserveHandshake(key string, resumed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.resumed == nil {
		c.resumed = map[string]bool{}
	}
	c.resumed[key] = resumed
}

// Put implements tls.ClientSessionCache: it keeps the newest ticket per
// controller and writes the file, unless the cached ticket has just
// resumed a session and is younger than cacheRefresh. A nil cs removes
// the entry.
func (c *sessionCache) Put(key string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now().Unix()
	i := c.sessionIndex(key)
	switch {
	case cs == nil && i < 0:
		return
	case cs == nil:
		c.file.Sessions = slices.Delete(c.file.Sessions, i, i+1)
	case i >= 0 && c.resumed[key] && now-c.file.Sessions[i].Saved < int64(cacheRefresh/time.Second):
		return // the cached ticket works and is fresh enough
	default:
		ticket, state, err := cs.ResumptionState()
		if err != nil || state == nil {
			return
		}
		b, err := state.Bytes()
		if err != nil {
			return
		}
		e := cacheSession{CA: c.ca, Server: key, Saved: now, Ticket: ticket, State: b}
		if i < 0 {
			c.file.Sessions = append(c.file.Sessions, e)
		} else {
			c.file.Sessions[i] = e
		}
	}
	c.saveLocked()
}

func (c *sessionCache) sessionIndex(key string) int {
	return slices.IndexFunc(c.file.Sessions, func(s cacheSession) bool { return s.CA == c.ca && s.Server == key })
}

// Leader is the leader remembered for this cluster, "" if none. The
// caller must check it against its configured servers.
func (c *sessionCache) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := c.leaderIndex(); i >= 0 {
		return c.file.Leaders[i].Server
	}
	return ""
}

// SetLeader remembers the leader a controller named; the file is written
// only when it changed.
func (c *sessionCache) SetLeader(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := cacheLeader{CA: c.ca, Server: addr, Saved: c.now().Unix()}
	switch i := c.leaderIndex(); {
	case i < 0:
		c.file.Leaders = append(c.file.Leaders, e)
	case c.file.Leaders[i].Server == addr:
		return
	default:
		c.file.Leaders[i] = e
	}
	c.saveLocked()
}

func (c *sessionCache) leaderIndex() int {
	return slices.IndexFunc(c.file.Leaders, func(l cacheLeader) bool { return l.CA == c.ca })
}

// saveLocked writes the file atomically; failures are ignored (the cache
// only saves work). c.mu held.
func (c *sessionCache) saveLocked() {
	if c.path == "" {
		return
	}
	c.prune()
	c.file.Version = cacheVersion
	data := c.file.encode()
	dir := filepath.Dir(c.path)
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		// The parent (~/.cache) may not exist yet.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return
		}
	}
	if !privateDir(dir) {
		return
	}
	tmp, err := os.CreateTemp(dir, "."+cacheFileName+".*") // mode 0600
	if err != nil {
		return
	}
	_, werr := tmp.Write(data)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), c.path) != nil {
		os.Remove(tmp.Name())
	}
}
