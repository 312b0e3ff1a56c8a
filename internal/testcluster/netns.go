package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A cluster started with Options.NetNS has a network of its own that exists
// only in network namespaces the cluster creates; nothing is configured in
// the namespace of the test process:
//
//	hub namespace:  bridge privBridge, holding every controller's address
//	                (privNet.1, .2, ...); the controllers run here.
//	node namespace: one per agent, with the end privNodeLink of a veth pair
//	                whose other end (privHubLink+index) is a port of the
//	                bridge, and the address privNet.(100+index). The agent
//	                also gets a UTS namespace named after its node, so its
//	                jobs (which share the agent's network) see the node name
//	                as host name.
//
// The namespaces are anonymous: the cluster holds a file descriptor of
// each and starts processes from a thread that has joined one, so no name
// is registered anywhere, parallel clusters cannot collide (interface
// names and addresses are private to each cluster's namespaces), and a
// crashed test leaves nothing behind once its processes are gone: a
// namespace, and the bridge and veths in it, vanish with the last process
// or descriptor holding it.
const (
	privNet      = "10.77.0." // the /24 of the private network
	privBridge   = "stkbr0"
	privHubLink  = "stkh"
	privNodeLink = "stk0"
	// Controllers listen on these ports of their own address.
	privAPIPort  = 7701
	privRaftPort = 7702
	firstNodeIP  = 100
)

// privateNet is the private network of a cluster started with
// Options.NetNS.
type privateNet struct {
	hub netns.NsHandle

	mu          sync.Mutex
	closed      bool
	controllers int
	nodes       map[string]netns.NsHandle
	nodeOrder   []string
}

// newNetNS creates an anonymous network namespace without moving the
// calling thread: the namespace is made on a thread that is then
// discarded, and is held by the returned descriptor.
func newNetNS() (netns.NsHandle, error) {
	var ns netns.NsHandle
	err := onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare network namespace: %w", err)
		}
		var err error
		ns, err = netns.Get()
		return err
	})
	return ns, err
}

// onThread runs f on an OS thread of its own that is discarded afterwards
// (the goroutine never unlocks it), so whatever namespace f moves the
// thread into never reaches another goroutine.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if unix.Gettid() == unix.Getpid() {
			// The main thread is kept (wedged), not ended, when its
			// goroutine exits locked, and /proc/self shows its namespaces:
			// leave it alone, and hold it so that f lands elsewhere.
			errc <- onThread(f)
			runtime.UnlockOSThread()
			return
		}
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("panic: %v", r)
			}
		}()
		errc <- f()
	}()
	return <-errc
}

// inNS runs f on a thread in network namespace ns and, if hostname is not
// "", in a new UTS namespace with that host name. Processes f starts are
// in those namespaces.
func inNS(ns netns.NsHandle, hostname string, f func() error) error {
	return onThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("join network namespace: %w", err)
		}
		if hostname != "" {
			if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
				return fmt.Errorf("unshare UTS namespace: %w", err)
			}
			if err := unix.Sethostname([]byte(hostname)); err != nil {
				return fmt.Errorf("sethostname: %w", err)
			}
		}
		return f()
	})
}

// handleIn is a netlink handle working in namespace ns. Its sockets are
// made on a discarded thread that joined ns, so no thread of the process
// is ever switched back and forth.
func handleIn(ns netns.NsHandle) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := inNS(ns, "", func() error {
		var err error
		h, err = netlink.NewHandle()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return h, nil
}

// linkUp brings up a link of the namespace h works in.
func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// newPrivateNet creates the hub namespace and its bridge.
func newPrivateNet() (*privateNet, error) {
	hub, err := newNetNS()
	if err != nil {
		return nil, err
	}
	n := &privateNet{hub: hub, nodes: map[string]netns.NsHandle{}}
	h, err := handleIn(hub)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("netlink in hub namespace: %w", err)
	}
	defer h.Close()
	if err := linkUp(h, "lo"); err != nil {
		n.close()
		return nil, err
	}
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: privBridge}}); err != nil {
		n.close()
		return nil, fmt.Errorf("add bridge: %w", err)
	}
	if err := linkUp(h, privBridge); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// addController gives the next controller an address on the hub's bridge
// and returns its API and Raft addresses.
func (n *privateNet) addController() (apiAddr, raftAddr string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.controllers+1 >= firstNodeIP {
		return "", "", errors.New("too many controllers for the private network")
	}
	ip := fmt.Sprintf("%s%d", privNet, n.controllers+1)
	h, err := handleIn(n.hub)
	if err != nil {
		return "", "", fmt.Errorf("netlink in hub namespace: %w", err)
	}
	defer h.Close()
	br, err := h.LinkByName(privBridge)
	if err != nil {
		return "", "", err
	}
	addr, err := netlink.ParseAddr(ip + "/24")
	if err != nil {
		return "", "", err
	}
	if err := h.AddrAdd(br, addr); err != nil {
		return "", "", fmt.Errorf("address %s on the bridge: %w", ip, err)
	}
	n.controllers++
	return net.JoinHostPort(ip, fmt.Sprint(privAPIPort)), net.JoinHostPort(ip, fmt.Sprint(privRaftPort)), nil
}

// node returns the namespace of a node, creating it and wiring it to the
// bridge on first use.
func (n *privateNet) node(name string) (netns.NsHandle, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ns, ok := n.nodes[name]; ok {
		return ns, nil
	}
	if n.closed {
		return -1, errors.New("private network is closed")
	}
	idx := len(n.nodeOrder) + 1
	if firstNodeIP+idx > 254 {
		return -1, errors.New("too many nodes for the private network")
	}
	ns, err := newNetNS()
	if err != nil {
		return -1, err
	}
	if err := n.wireNode(ns, idx); err != nil {
		ns.Close()
		return -1, fmt.Errorf("wiring namespace of %s: %w", name, err)
	}
	n.nodes[name] = ns
	n.nodeOrder = append(n.nodeOrder, name)
	return ns, nil
}

// wireNode connects node namespace ns (the idx-th) to the bridge.
func (n *privateNet) wireNode(ns netns.NsHandle, idx int) error {
	hh, err := handleIn(n.hub)
	if err != nil {
		return fmt.Errorf("netlink in hub namespace: %w", err)
	}
	defer hh.Close()
	br, err := hh.LinkByName(privBridge)
	if err != nil {
		return err
	}
	hubSide := fmt.Sprintf("%s%d", privHubLink, idx)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hubSide, MasterIndex: br.Attrs().Index},
		PeerName:      privNodeLink,
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := hh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", hubSide, err)
	}
	if err := linkUp(hh, hubSide); err != nil {
		return err
	}
	nh, err := handleIn(ns)
	if err != nil {
		return fmt.Errorf("netlink in node namespace: %w", err)
	}
	defer nh.Close()
	if err := linkUp(nh, "lo"); err != nil {
		return err
	}
	l, err := nh.LinkByName(privNodeLink)
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(fmt.Sprintf("%s%d/24", privNet, firstNodeIP+idx))
	if err != nil {
		return err
	}
	if err := nh.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("node address: %w", err)
	}
	return linkUp(nh, privNodeLink)
}

// inHub runs f (which may start processes) in the hub namespace.
func (n *privateNet) inHub(f func() error) error {
	return inNS(n.hub, "", f)
}

// nodeEnter is a Proc.enter that starts a node's agent in the node's
// network namespace, with the node name as host name.
func (n *privateNet) nodeEnter(name string) func(func() error) error {
	return func(start func() error) error {
		ns, err := n.node(name)
		if err != nil {
			return err
		}
		return inNS(ns, name, start)
	}
}

// dial connects from the hub namespace: the socket is made on a thread
// in the hub, and stays there whichever thread uses it later.
func (n *privateNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.inHub(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// close drops the cluster's hold on the namespaces; each vanishes, with
// its links, once no process is left in it.
func (n *privateNet) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.closed = true
	for _, ns := range n.nodes {
		ns.Close()
	}
	n.hub.Close()
}
