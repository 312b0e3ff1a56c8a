package attest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// swtpm serves one connection at a time and its commands take milliseconds;
// the deadline only keeps a wedged emulator from hanging the agent forever.
const tpmSwtpmTimeout = 2 * time.Minute

// tpmSwtpmSendCommand is TPM_SEND_COMMAND of the MS simulator TCP protocol,
// which swtpm speaks on its server port.
const tpmSwtpmSendCommand = 8

// tpmSwtpmRT frames commands the MS simulator way: u32 TPM_SEND_COMMAND,
// u8 locality, u32 length, command; the answer is u32 length, response,
// u32 acknowledgement (0). All big-endian.
type tpmSwtpmRT struct {
	conn net.Conn
}

func tpmDialSwtpm(addr string) (tpmRoundTripper, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("attest: dial swtpm: %w", err)
	}
	return &tpmSwtpmRT{conn: conn}, nil
}

func (s *tpmSwtpmRT) RoundTrip(cmd []byte) ([]byte, error) {
	if err := s.conn.SetDeadline(time.Now().Add(tpmSwtpmTimeout)); err != nil {
		return nil, err
	}
	// One write per command: a split header would wait on Nagle.
	msg := make([]byte, 9, 9+len(cmd))
	binary.BigEndian.PutUint32(msg[0:], tpmSwtpmSendCommand)
	msg[4] = 0 // locality
	binary.BigEndian.PutUint32(msg[5:], uint32(len(cmd)))
	msg = append(msg, cmd...)
	if _, err := s.conn.Write(msg); err != nil {
		return nil, fmt.Errorf("attest: swtpm write: %w", err)
	}
	var n uint32
	if err := binary.Read(s.conn, binary.BigEndian, &n); err != nil {
		return nil, fmt.Errorf("attest: swtpm read length: %w", err)
	}
	if n > tpmMaxResponse {
		return nil, fmt.Errorf("attest: swtpm response of %d bytes", n)
	}
	resp := make([]byte, n+4)
	if _, err := io.ReadFull(s.conn, resp); err != nil {
		return nil, fmt.Errorf("attest: swtpm read response: %w", err)
	}
	if ack := binary.BigEndian.Uint32(resp[n:]); ack != 0 {
		return nil, fmt.Errorf("attest: swtpm acknowledged with %d", ack)
	}
	return resp[:n], nil
}

func (s *tpmSwtpmRT) Close() error { return s.conn.Close() }

// tpmStreamRT sends raw TPM commands over a stream (swtpm's unixio server)
// and delimits responses by the size field of the TPM response header.
type tpmStreamRT struct {
	conn net.Conn
}

func tpmDialUnix(path string) (tpmRoundTripper, error) {
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("attest: dial TPM socket: %w", err)
	}
	return &tpmStreamRT{conn: conn}, nil
}

// tpmHeaderSize is the TPM 2.0 response header: u16 tag, u32 size, u32 code.
const tpmHeaderSize = 10

func (s *tpmStreamRT) RoundTrip(cmd []byte) ([]byte, error) {
	if err := s.conn.SetDeadline(time.Now().Add(tpmSwtpmTimeout)); err != nil {
		return nil, err
	}
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("attest: TPM socket write: %w", err)
	}
	hdr := make([]byte, tpmHeaderSize)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("attest: TPM socket read header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[2:])
	if n < tpmHeaderSize || n > tpmMaxResponse {
		return nil, fmt.Errorf("attest: TPM response size %d", n)
	}
	resp := make([]byte, n)
	copy(resp, hdr)
	if _, err := io.ReadFull(s.conn, resp[tpmHeaderSize:]); err != nil {
		return nil, fmt.Errorf("attest: TPM socket read response: %w", err)
	}
	return resp, nil
}

func (s *tpmStreamRT) Close() error { return s.conn.Close() }
