// primes (Go): a complete runsd worker, standard library only (docs/workers.md).
//
// Emits the primes below input.below (default 50) as items {"n": p, "index": k}, with a step,
// progress, a checkpoint after every item, and a result. It resumes from its checkpoint, so a
// run stopped at its limit and extended, or re-queued after a daemon restart, goes on where
// it stopped.
//
// Build: go build -o primes . (in this directory)
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

const maxBelow = 1000000

type cursor struct {
	Next    int  `json:"next"`
	Found   int  `json:"found"`
	Largest *int `json:"largest"`
}

type start struct {
	Type string `json:"type"`
	Run  struct {
		ID      string          `json:"id"`
		Input   json.RawMessage `json:"input"`
		Limit   *int            `json:"limit"` // the total over all attempts; nil = none
		Cursor  *cursor         `json:"cursor"`
		Attempt int             `json:"attempt"`
	} `json:"run"`
}

// msg is one protocol message: its type, then key/value pairs kept in the order given, so
// "type" comes first on the wire as the protocol asks.
type msg []any

func m(typ string, kv ...any) msg { return append(msg{"type", typ}, kv...) }

func (m msg) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i := 0; i+1 < len(m); i += 2 {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(m[i])
		v, err := json.Marshal(m[i+1])
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// emit writes messages as JSON lines in one write(2): the daemon sees them at once, whole.
func emit(msgs ...msg) {
	var buf bytes.Buffer
	for _, one := range msgs {
		line, err := json.Marshal(one)
		if err != nil {
			panic(err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if _, err := os.Stdout.Write(buf.Bytes()); err != nil {
		os.Exit(1) // stdout closed: the daemon no longer listens
	}
}

// fail writes an `error` message and exits 1: the run ends failed/error_occurred.
func fail(format string, args ...any) {
	emit(m("error", "message", fmt.Sprintf(format, args...)))
	os.Exit(1)
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func main() {
	// The first stdin line is always the start message (it may be long: raise the limit).
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 16<<20)
	if !in.Scan() {
		fail("no start message on stdin")
	}
	var st start
	if err := json.Unmarshal(in.Bytes(), &st); err != nil || st.Type != "start" {
		fail("the first stdin line is not a start message")
	}
	run := st.Run
	var input map[string]json.RawMessage
	if len(run.Input) > 0 && string(run.Input) != "null" {
		if err := json.Unmarshal(run.Input, &input); err != nil {
			fail("input must be an object such as {\"below\": 100}")
		}
	}
	below := 50
	if raw, ok := input["below"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &below); err != nil {
			below = -1 // not an integer
		}
	}
	if below < 2 || below > maxBelow {
		fail("input.below must be an integer from 2 to %d", maxBelow)
	}
	c := cursor{Next: 2}
	if run.Cursor != nil {
		c = *run.Cursor
	}

	emit(m("log", "level", "info",
		"message", fmt.Sprintf("attempt %d: from %d to %d", run.Attempt, c.Next, below-1)),
		m("step", "name", "scan", "state", "started", "total", below-2))
	for n := c.Next; n < below; n++ {
		if !isPrime(n) {
			continue
		}
		p := n
		c.Found++
		c.Largest = &p
		c.Next = n + 1
		// The item, then a checkpoint past it: a resumed attempt starts after this item.
		emit(m("item", "data", msg{"n", n, "index", c.Found}),
			m("checkpoint", "cursor", c),
			m("progress", "done", n-1, "total", below-2))
		if run.Limit != nil && c.Found >= *run.Limit {
			return // the limit ended the run (match_limit_met); an extend resumes it
		}
	}
	emit(m("step", "name", "scan", "state", "finished", "total", below-2),
		m("progress", "done", below-2, "total", below-2),
		m("result", "data", msg{"below", below, "count", c.Found, "largest", c.Largest}),
		m("done"))
}
