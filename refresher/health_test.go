package refresher

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
)

func TestHandler(t *testing.T) {
	s, reg := startFirstDenied(t)
	e := s.env
	srv := httptest.NewServer(s.r.Handler(s.metrics))
	defer srv.Close()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	expect := func(path string, code int, contains ...string) {
		t.Helper()
		got, body := get(path)
		if got != code {
			t.Errorf("GET %s = %d, want %d\n%s", path, got, code, body)
		}
		for _, c := range contains {
			if !strings.Contains(body, c) {
				t.Errorf("GET %s body does not contain %q:\n%s", path, c, body)
			}
		}
	}

	wait := s.next(t) // first attempt denied
	expect("/healthz", 200)
	expect("/health", 200)
	expect("/readyz", 503, "123456789012/us-west-2", "no token yet")

	s.clock.Step(wait)
	s.next(t)
	expect("/readyz", 200)
	expect("/healthz", 200)
	expect("/metrics", 200,
		`ecr_token_refresh_refreshes_total{password_file="`+reg.PasswordFile+`",region="us-west-2",registry_id="123456789012",result="success"} 1`,
		`ecr_token_refresh_last_success_timestamp_seconds{`,
		`ecr_token_refresh_token_expiry_timestamp_seconds{`,
		`ecr_token_refresh_api_call_duration_seconds_count{region="us-west-2",result="success"} 1`,
	)
	if _, body := get("/metrics"); strings.Contains(body, e.srv.LastPassword(fakeecr.DefaultAccount, "us-west-2")) {
		t.Error("/metrics shows the password")
	}

	// Past the expiry: the refresh that falls due meanwhile fails, so no
	// fresh token can race the check.
	e.srv.SetFault("", fakeecr.FaultAccessDenied, 0)
	s.clock.SetTime(s.clock.Now().Add(time.Hour))
	expect("/readyz", 503, "token expired at")
	expect("/healthz", 200) // liveness never depends on AWS
	if got, _ := get("/nope"); got != 404 {
		t.Errorf("GET /nope = %d, want 404", got)
	}
}
