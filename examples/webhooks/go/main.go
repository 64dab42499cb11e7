// A runsd webhook receiver that verifies Standard Webhooks signatures, standard library only
// (docs/webhooks.md, "Verifying").
//
//	WEBHOOK_SECRET=whsec_... receiver PORT RECORD_FILE
//
// Listens on 127.0.0.1:PORT (0: any free port) and prints "listening on 127.0.0.1:<port>".
// Every POST is verified against the secret (given in the environment, not in argv, which any
// local user can read): a verified delivery is answered 204, a refused one 400; each is
// appended to RECORD_FILE as one JSON line {verified, error, duplicate, webhook_id,
// webhook_timestamp, webhook_signature, type, run_id, status, body}. Deliveries are
// at-least-once: a webhook-id seen before is answered 204 again, recorded as a duplicate.
//
// Build: go build -o receiver . (in this directory)
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

const tolerance = 5 * time.Minute // as in the reference libraries

// verify checks the signature headers of a delivery against the secret and returns the body.
func verify(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhook-timestamp is not an integer")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook-timestamp too far from now")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return errors.New("the secret is not whsec_ followed by base64")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	expected := []byte(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	// Several signatures (secret rotation) are separated by spaces; one must match.
	for _, sig := range strings.Split(sigs, " ") {
		version, value, _ := strings.Cut(sig, ",")
		if version == "v1" && hmac.Equal([]byte(value), expected) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

type record struct {
	Verified         bool    `json:"verified"`
	Error            *string `json:"error"`
	Duplicate        bool    `json:"duplicate"`
	WebhookID        string  `json:"webhook_id"`
	WebhookTimestamp string  `json:"webhook_timestamp"`
	WebhookSignature string  `json:"webhook_signature"`
	Type             *string `json:"type"`
	RunID            *string `json:"run_id"`
	Status           *string `json:"status"`
	Body             string  `json:"body"`
}

type event struct {
	Type string `json:"type"`
	Data struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"data"`
}

func main() {
	secret := os.Getenv("WEBHOOK_SECRET")
	if len(os.Args) != 3 || !strings.HasPrefix(secret, "whsec_") {
		fmt.Fprintln(os.Stderr, "usage: WEBHOOK_SECRET=whsec_... receiver PORT RECORD_FILE")
		os.Exit(2)
	}
	recordFile := os.Args[2]
	var mu sync.Mutex
	seen := map[string]bool{}

	handler := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			http.Error(w, "cannot read the body", http.StatusBadRequest)
			return
		}
		rec := record{WebhookID: r.Header.Get("webhook-id"),
			WebhookTimestamp: r.Header.Get("webhook-timestamp"),
			WebhookSignature: r.Header.Get("webhook-signature"), Body: string(body)}
		var ev event
		err = verify(secret, r.Header, body, time.Now())
		if err == nil {
			err = json.Unmarshal(body, &ev)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			msg := err.Error()
			rec.Error = &msg
		} else {
			rec.Verified = true
			rec.Type, rec.RunID, rec.Status = &ev.Type, &ev.Data.ID, &ev.Data.Status
			rec.Duplicate = seen[rec.WebhookID]
			seen[rec.WebhookID] = true
		}
		line, _ := json.Marshal(rec)
		f, ferr := os.OpenFile(recordFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if ferr == nil {
			f.Write(append(line, '\n'))
			f.Close()
		}
		if rec.Verified {
			w.WriteHeader(http.StatusNoContent)
		} else {
			w.WriteHeader(http.StatusBadRequest)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	if err := http.Serve(ln, http.HandlerFunc(handler)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
