package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/stockade-hpc/stockade/raftstore"
)

// maxBody bounds every request body (a 4 MiB script JSON-escaped fits).
const maxBody = 16 << 20

// httpError is an error with the status it answers.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) error {
	return errorf(http.StatusBadRequest, format, args...)
}

// oneLine keeps error bodies to one line, as the CLI prints them verbatim.
func oneLine(err error) error {
	msg := err.Error()
	if !strings.ContainsAny(msg, "\r\n") {
		return err
	}
	return errors.New(strings.Join(strings.Fields(msg), " "))
}

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// Error messages read ">= 1", not "\u003e= 1".
	enc.SetEscapeHTML(false)
	// If this fails the client went away; there is no one to tell.
	enc.Encode(v)
}

// writeError answers err as {"error": "..."} with its status: httpError
// carries one; Raft errors mean "ask again, maybe elsewhere" (503).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusServiceUnavailable
	level := slog.LevelDebug // expected: bad input, elections, clients leaving
	var he *httpError
	switch {
	case errors.As(err, &he):
		status = he.status
		if status >= 500 && status != http.StatusServiceUnavailable {
			level = slog.LevelWarn
		}
	case errors.Is(err, raftstore.ErrInvalidCommand), errors.Is(err, raftstore.ErrUnknownPartition),
		errors.Is(err, raftstore.ErrUnknownNode):
		status = http.StatusBadRequest
	case errors.Is(err, raftstore.ErrNotLeader):
		err = errors.New("this controller is no longer the leader; retry")
	case errors.Is(err, errNoLeader), r.Context().Err() != nil:
	default:
		// Raft failures (timeouts, shutdown, lost leadership) and local
		// errors: 503 lets the client retry, and writes are idempotent or
		// harmless to repeat.
		level = slog.LevelWarn
	}
	s.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stockade"`)
	}
	writeJSON(w, status, map[string]string{"error": oneLine(err).Error()})
}

// decodeJSON reads a request body into v strictly: at most 16 MiB, no
// unknown fields, exactly one JSON value. Errors name the field.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return describeJSONError(err)
		}
		return badRequest("json: unexpected data after the request object")
	}
	return nil
}

func describeJSONError(err error) error {
	var (
		mbe *http.MaxBytesError
		ute *json.UnmarshalTypeError
		se  *json.SyntaxError
	)
	switch {
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, "request body larger than %d MiB", mbe.Limit>>20)
	case errors.Is(err, io.EOF):
		return badRequest("json: request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("json: request body ends early")
	case errors.As(err, &ute):
		if ute.Field == "" {
			return badRequest("json: request body must be a JSON object, not %s", ute.Value)
		}
		return badRequest("%s: expected %s, got %s", ute.Field, jsonKind(ute.Type.Kind().String()), ute.Value)
	case errors.As(err, &se):
		return badRequest("json: syntax error at byte %d: %s", se.Offset, se.Error())
	}
	// Unknown fields come as `json: unknown field "x"`.
	return badRequest("%s", oneLine(err).Error())
}

func jsonKind(k string) string {
	switch k {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "a list"
	case "struct", "map":
		return "an object"
	}
	return k
}

// logRequests logs each request at debug level (never headers: they carry
// tokens).
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		}
		next.ServeHTTP(w, r)
	})
}
