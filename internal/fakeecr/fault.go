package fakeecr

import "fmt"

// Fault is a failure the server injects into GetAuthorizationToken answers.
type Fault int

// The faults SetFault can inject.
const (
	// FaultNone answers normally.
	FaultNone Fault = iota
	// FaultThrottle answers 400 ThrottlingException.
	FaultThrottle
	// FaultServerError answers 500 ServerException.
	FaultServerError
	// FaultAccessDenied answers 400 AccessDeniedException.
	FaultAccessDenied
	// FaultHang never answers: the request blocks until the client gives up
	// or the server is closed, and then the connection is dropped.
	FaultHang
	// FaultGarbageJSON answers 200 with a body that is not JSON.
	FaultGarbageJSON
	// FaultBadBase64 answers 200 with an authorizationToken that is not base64.
	FaultBadBase64
	// FaultNoColon answers 200 with a token that decodes to text without ':'.
	FaultNoColon
	// FaultEmptyList answers 200 with an empty authorizationData list.
	FaultEmptyList
)

var faultNames = [...]string{
	FaultNone:         "FaultNone",
	FaultThrottle:     "FaultThrottle",
	FaultServerError:  "FaultServerError",
	FaultAccessDenied: "FaultAccessDenied",
	FaultHang:         "FaultHang",
	FaultGarbageJSON:  "FaultGarbageJSON",
	FaultBadBase64:    "FaultBadBase64",
	FaultNoColon:      "FaultNoColon",
	FaultEmptyList:    "FaultEmptyList",
}

// String returns the constant's name, e.g. "FaultThrottle".
func (f Fault) String() string {
	if f >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// faultEntry is a fault armed for an account, with the number of calls it
// still applies to (<= 0: until changed).
type faultEntry struct {
	fault     Fault
	remaining int
}

// SetFault makes the next times GetAuthorizationToken calls from account fail
// with f; times <= 0 keeps the fault until it is changed. Account "" applies
// to every account that has no fault of its own (an account's own setting,
// even FaultNone with times > 0, takes precedence). SetFault(account,
// FaultNone, 0) clears the account's setting.
func (s *Server) SetFault(account string, f Fault, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == FaultNone && times <= 0 {
		delete(s.faults, account)
		return
	}
	s.faults[account] = &faultEntry{fault: f, remaining: times}
}

// takeFault returns the fault for the next call from account and uses up one
// of its remaining calls. The caller must hold s.mu.
func (s *Server) takeFault(account string) Fault {
	key := account
	e, ok := s.faults[key]
	if !ok {
		key = ""
		if e, ok = s.faults[key]; !ok {
			return FaultNone
		}
	}
	if e.remaining > 0 {
		e.remaining--
		if e.remaining == 0 {
			delete(s.faults, key)
		}
	}
	return e.fault
}
