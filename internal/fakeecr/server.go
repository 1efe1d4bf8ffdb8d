// Package fakeecr serves an Amazon ECR and AWS STS compatible endpoint on
// loopback, so that the real aws-sdk-go-v2 ECR and STS clients can be driven
// without AWS. It verifies SigV4 signatures, issues authorization tokens and
// temporary credentials, records every call and injects faults on demand.
package fakeecr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"
)

// Default credentials the server knows from the start; Env hands them out.
const (
	// DefaultAccount is the account the default credentials belong to.
	DefaultAccount = "111111111111"
	// DefaultAccessKeyID is the access key ID of the default credentials.
	DefaultAccessKeyID = "AKIAFAKEECRDEFAULT01"
	// DefaultSecretAccessKey is the secret access key of the default credentials.
	DefaultSecretAccessKey = "fakeecr/default/secret/access/key/000000"
	// DefaultRegion is the region Env configures.
	DefaultRegion = "us-west-2"
)

// DefaultTokenLifetime is how long issued authorization tokens stay valid
// unless SetTokenLifetime says otherwise; it matches real ECR.
const DefaultTokenLifetime = 12 * time.Hour

// Operation names, as recorded in Call.Operation.
const (
	// OpGetAuthorizationToken is ECR GetAuthorizationToken.
	OpGetAuthorizationToken = "GetAuthorizationToken"
	// OpAssumeRole is STS AssumeRole.
	OpAssumeRole = "AssumeRole"
)

// Call is one authenticated request the server received for a known operation.
type Call struct {
	// Operation is OpGetAuthorizationToken or OpAssumeRole.
	Operation string
	// Account is the account of the credentials that signed the call.
	Account string
	// Region is the region of the signature's credential scope.
	Region string
	// AccessKeyID is the access key that signed the call.
	AccessKeyID string
	// Fault is the fault injected into the answer (always FaultNone for AssumeRole).
	Fault Fault
	// RoleARN is the role requested by an AssumeRole call.
	RoleARN string
}

// principal is a set of credentials the server accepts.
type principal struct {
	secretAccessKey string
	sessionToken    string
	account         string
}

// Server is a fake ECR and STS endpoint. Its methods are safe for concurrent use.
type Server struct {
	srv       *httptest.Server
	closed    chan struct{}
	closeOnce sync.Once

	mu          sync.Mutex
	keys        map[string]principal   // by access key ID
	externalIDs map[string]string      // role ARN -> required external ID
	faults      map[string]*faultEntry // by account, "" = every account
	clock       func() time.Time
	lifetime    time.Duration
	passwords   map[string]string // "account/region" -> newest password
	calls       []Call
	callAdded   chan struct{} // closed and replaced whenever a call is recorded
}

// New starts a server on 127.0.0.1. Close it when done.
func New() *Server {
	s := &Server{
		closed: make(chan struct{}),
		keys: map[string]principal{
			DefaultAccessKeyID: {secretAccessKey: DefaultSecretAccessKey, account: DefaultAccount},
		},
		externalIDs: map[string]string{},
		faults:      map[string]*faultEntry{},
		clock:       time.Now,
		lifetime:    DefaultTokenLifetime,
		passwords:   map[string]string{},
		callAdded:   make(chan struct{}),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// CloseEachConnection makes the server close every connection after its
// answer, as a server without keep-alive does: no connection outlives its
// call, so a test can count a client's goroutines and file descriptors
// without its idle connections.
func (s *Server) CloseEachConnection() {
	s.srv.Config.SetKeepAlivesEnabled(false)
}

// URL returns the server's base URL, e.g. "http://127.0.0.1:41234".
func (s *Server) URL() string { return s.srv.URL }

// Close releases hung requests and shuts the server down. It is safe to call
// more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
	s.srv.Close()
}

// Env returns the environment ("KEY=value" entries) that points the AWS SDK
// of a process under test at the server with the default credentials and
// DefaultRegion, without shared config files or instance metadata. It blanks
// AWS_SESSION_TOKEN and AWS_PROFILE so ambient settings cannot interfere, and
// leaves AWS_MAX_ATTEMPTS unset.
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_ECR=" + s.URL(),
		"AWS_ENDPOINT_URL_STS=" + s.URL(),
		"AWS_ACCESS_KEY_ID=" + DefaultAccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + DefaultSecretAccessKey,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_REGION=" + DefaultRegion,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
	}
}

// SetClock sets the clock that token expiry (expiresAt) is computed from.
// Temporary credentials from AssumeRole expire by the wall clock, because the
// SDK's credential cache judges them by it.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = now
}

// SetTokenLifetime sets how long tokens issued from now on stay valid.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// RequireExternalID makes AssumeRole for roleARN fail with AccessDenied
// unless the request carries externalID.
func (s *Server) RequireExternalID(roleARN, externalID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.externalIDs[roleARN] = externalID
}

// LastPassword returns the newest password issued to account in region, or
// "" if none was.
func (s *Server) LastPassword(account, region string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.passwords[account+"/"+region]
}

// Calls returns the calls received so far, in arrival order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallCount returns how many calls of operation were received; operation ""
// counts every call.
func (s *Server) CallCount(operation string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countLocked(operation)
}

// WaitForCalls blocks until at least n calls of operation (or of any
// operation if it is "") were received, or ctx ends.
func (s *Server) WaitForCalls(ctx context.Context, operation string, n int) error {
	for {
		s.mu.Lock()
		got, added := s.countLocked(operation), s.callAdded
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-added:
		case <-ctx.Done():
			return fmt.Errorf("fakeecr: got %d of %d %q calls: %w", got, n, operation, ctx.Err())
		}
	}
}

func (s *Server) countLocked(operation string) int {
	n := 0
	for _, c := range s.calls {
		if operation == "" || c.Operation == operation {
			n++
		}
	}
	return n
}

// record appends c to the call log and wakes WaitForCalls. The caller must
// hold s.mu.
func (s *Server) record(c Call) {
	s.calls = append(s.calls, c)
	close(s.callAdded)
	s.callAdded = make(chan struct{})
}

// serveHTTP routes AWS JSON requests to ECR and everything else to STS.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", randomHex(16))
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-") {
		s.serveECR(w, r)
		return
	}
	s.serveSTS(w, r)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails since Go 1.24
	return hex.EncodeToString(b)
}
