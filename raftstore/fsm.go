package raftstore

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// encodeCommand is the log format of a command: JSON, with the user's token
// hash moved where it survives marshalling.
func encodeCommand(cmd *Command) ([]byte, error) {
	if cmd.User != nil && cmd.User.TokenHash != "" && cmd.UserTokenHash == "" {
		c := *cmd
		c.UserTokenHash = cmd.User.TokenHash
		cmd = &c
	}
	return json.Marshal(cmd)
}

func decodeCommand(data []byte) (*Command, error) {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: undecodable log entry: %v", ErrInvalidCommand, err)
	}
	return &c, nil
}

// fsm adapts Store to raft. It implements BatchingFSM so a Raft batch
// becomes one memdb transaction.
type fsm struct{ s *Store }

var _ raft.BatchingFSM = (*fsm)(nil)

func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	es := make([]entry, len(logs))
	for i, l := range logs {
		es[i].index = l.Index
		// Configuration entries only advance the index, which lets
		// ReadBarrier compare it with Raft's commit index.
		if l.Type == raft.LogCommand {
			es[i].cmd, es[i].err = decodeCommand(l.Data)
		}
	}
	return f.s.applyBatch(es)
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.s.Snapshot()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.s.Restore(rc)
}

// fsmSnapshot streams an immutable memdb view; Raft calls Persist on its
// own goroutine while Apply goes on.
type fsmSnapshot struct{ snap *Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.snap.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
