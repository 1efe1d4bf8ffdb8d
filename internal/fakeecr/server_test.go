package fakeecr_test

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ecr-token-refresh/ecr-token-refresh/internal/fakeecr"
)

// newServer starts a server that is closed when the test ends.
func newServer(t *testing.T) *fakeecr.Server {
	t.Helper()
	srv := fakeecr.New()
	t.Cleanup(srv.Close)
	return srv
}

// loadConfig loads the SDK's default config from srv.Env(), with retries
// disabled so injected faults reach the caller unchanged.
func loadConfig(t *testing.T, srv *fakeecr.Server, opts ...func(*config.LoadOptions) error) aws.Config {
	t.Helper()
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	noRetries := config.WithRetryer(func() aws.Retryer { return retry.AddWithMaxAttempts(retry.NewStandard(), 1) })
	cfg, err := config.LoadDefaultConfig(t.Context(), append([]func(*config.LoadOptions) error{noRetries}, opts...)...)
	if err != nil {
		t.Fatalf("LoadDefaultConfig: %v", err)
	}
	return cfg
}

// getToken calls GetAuthorizationToken with the real ECR client.
func getToken(ctx context.Context, cfg aws.Config, optFns ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error) {
	return ecr.NewFromConfig(cfg, optFns...).GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
}

// withCredentials makes an ECR client sign with p.
func withCredentials(p aws.CredentialsProvider) func(*ecr.Options) {
	return func(o *ecr.Options) { o.Credentials = p }
}

// password decodes the single token of out into its password.
func password(t *testing.T, out *ecr.GetAuthorizationTokenOutput) string {
	t.Helper()
	if len(out.AuthorizationData) != 1 {
		t.Fatalf("got %d authorizationData entries, want 1", len(out.AuthorizationData))
	}
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(out.AuthorizationData[0].AuthorizationToken))
	if err != nil {
		t.Fatalf("token is not base64: %v", err)
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user != "AWS" {
		t.Fatalf("token decodes to %q, want AWS:<password>", raw)
	}
	return pass
}

// apiErrorOf returns the API error code and HTTP status in err.
func apiErrorOf(t *testing.T, err error) (string, int) {
	t.Helper()
	var apiErr smithy.APIError
	var respErr *awshttp.ResponseError
	if !errors.As(err, &apiErr) || !errors.As(err, &respErr) {
		t.Fatalf("got error %v, want an API error", err)
	}
	return apiErr.ErrorCode(), respErr.HTTPStatusCode()
}

func TestEnv(t *testing.T) {
	srv := newServer(t)
	env := srv.Env()
	for _, want := range []string{
		"AWS_ENDPOINT_URL_ECR=" + srv.URL(),
		"AWS_ENDPOINT_URL_STS=" + srv.URL(),
		"AWS_ACCESS_KEY_ID=" + fakeecr.DefaultAccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + fakeecr.DefaultSecretAccessKey,
		"AWS_REGION=us-west-2",
		"AWS_EC2_METADATA_DISABLED=true",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("Env() lacks %q", want)
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "AWS_MAX_ATTEMPTS=") {
			t.Errorf("Env() sets %q", kv)
		}
	}
}

func TestGetAuthorizationToken(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 500_000_000, time.UTC)
	tests := []struct {
		name       string
		region     string // "" = from Env
		lifetime   time.Duration
		wantRegion string
	}{
		{name: "default region and lifetime", wantRegion: "us-west-2"},
		{name: "region from credential scope", region: "eu-central-1", wantRegion: "eu-central-1"},
		{name: "short lifetime", lifetime: 90 * time.Second, wantRegion: "us-west-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			srv.SetClock(func() time.Time { return now })
			wantLifetime := fakeecr.DefaultTokenLifetime
			if tt.lifetime != 0 {
				srv.SetTokenLifetime(tt.lifetime)
				wantLifetime = tt.lifetime
			}
			var opts []func(*config.LoadOptions) error
			if tt.region != "" {
				opts = append(opts, config.WithRegion(tt.region))
			}
			cfg := loadConfig(t, srv, opts...)

			var passwords []string
			for range 2 {
				out, err := getToken(t.Context(), cfg)
				if err != nil {
					t.Fatalf("GetAuthorizationToken: %v", err)
				}
				pass := password(t, out)
				if last := srv.LastPassword(fakeecr.DefaultAccount, tt.wantRegion); pass != last {
					t.Errorf("password %q, LastPassword %q", pass, last)
				}
				if len(pass) < 100 || !strings.HasPrefix(pass, fakeecr.DefaultAccount+"-"+tt.wantRegion+"-") {
					t.Errorf("password %q: want >= 100 characters naming account and region", pass)
				}
				ad := out.AuthorizationData[0]
				if want := now.Add(wantLifetime); !aws.ToTime(ad.ExpiresAt).Equal(want) {
					t.Errorf("expiresAt %v, want %v", aws.ToTime(ad.ExpiresAt), want)
				}
				if got, want := aws.ToString(ad.ProxyEndpoint), "https://111111111111.dkr.ecr."+tt.wantRegion+".amazonaws.com"; got != want {
					t.Errorf("proxyEndpoint %q, want %q", got, want)
				}
				passwords = append(passwords, pass)
			}
			if passwords[0] == passwords[1] {
				t.Errorf("two calls issued the same password %q", passwords[0])
			}
			want := fakeecr.Call{Operation: fakeecr.OpGetAuthorizationToken, Account: fakeecr.DefaultAccount, Region: tt.wantRegion, AccessKeyID: fakeecr.DefaultAccessKeyID}
			if got := srv.Calls(); !slices.Equal(got, []fakeecr.Call{want, want}) {
				t.Errorf("Calls() = %+v, want two of %+v", got, want)
			}
			if got := srv.CallCount(fakeecr.OpGetAuthorizationToken); got != 2 {
				t.Errorf("CallCount = %d, want 2", got)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		fault      fakeecr.Fault
		wantCode   string // API error expected, or "" for an answer that deserializes
		wantStatus int
		check      func(t *testing.T, out *ecr.GetAuthorizationTokenOutput, err error)
	}{
		{fault: fakeecr.FaultThrottle, wantCode: "ThrottlingException", wantStatus: 400},
		{fault: fakeecr.FaultServerError, wantCode: "ServerException", wantStatus: 500},
		{fault: fakeecr.FaultAccessDenied, wantCode: "AccessDeniedException", wantStatus: 400},
		{fault: fakeecr.FaultGarbageJSON, check: func(t *testing.T, _ *ecr.GetAuthorizationTokenOutput, err error) {
			var de *smithy.DeserializationError
			if !errors.As(err, &de) {
				t.Errorf("got error %v, want a DeserializationError", err)
			}
		}},
		{fault: fakeecr.FaultBadBase64, check: func(t *testing.T, out *ecr.GetAuthorizationTokenOutput, err error) {
			if err != nil {
				t.Fatalf("GetAuthorizationToken: %v", err)
			}
			if _, err := base64.StdEncoding.DecodeString(aws.ToString(out.AuthorizationData[0].AuthorizationToken)); err == nil {
				t.Error("token decodes as base64")
			}
		}},
		{fault: fakeecr.FaultNoColon, check: func(t *testing.T, out *ecr.GetAuthorizationTokenOutput, err error) {
			if err != nil {
				t.Fatalf("GetAuthorizationToken: %v", err)
			}
			raw, err := base64.StdEncoding.DecodeString(aws.ToString(out.AuthorizationData[0].AuthorizationToken))
			if err != nil || strings.Contains(string(raw), ":") {
				t.Errorf("token decodes to %q, %v; want text without ':'", raw, err)
			}
		}},
		{fault: fakeecr.FaultEmptyList, check: func(t *testing.T, out *ecr.GetAuthorizationTokenOutput, err error) {
			if err != nil {
				t.Fatalf("GetAuthorizationToken: %v", err)
			}
			if out.AuthorizationData == nil || len(out.AuthorizationData) != 0 {
				t.Errorf("authorizationData = %#v, want an empty list", out.AuthorizationData)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			srv := newServer(t)
			srv.SetFault(fakeecr.DefaultAccount, tt.fault, 0)
			out, err := getToken(t.Context(), loadConfig(t, srv))
			if tt.wantCode != "" {
				if code, status := apiErrorOf(t, err); code != tt.wantCode || status != tt.wantStatus {
					t.Errorf("got %s (HTTP %d), want %s (HTTP %d)", code, status, tt.wantCode, tt.wantStatus)
				}
			} else {
				tt.check(t, out, err)
			}
			if got := srv.LastPassword(fakeecr.DefaultAccount, "us-west-2"); got != "" {
				t.Errorf("LastPassword = %q after a faulty answer, want none", got)
			}
			if calls := srv.Calls(); len(calls) != 1 || calls[0].Fault != tt.fault {
				t.Errorf("Calls() = %+v, want one call with %v", calls, tt.fault)
			}
		})
	}
}

func TestFaultTimes(t *testing.T) {
	const other = "999999999999"
	tests := []struct {
		name  string
		setup func(*fakeecr.Server)
		want  []bool // whether each successive call fails
	}{
		{
			name:  "twice",
			setup: func(s *fakeecr.Server) { s.SetFault(fakeecr.DefaultAccount, fakeecr.FaultThrottle, 2) },
			want:  []bool{true, true, false, false},
		},
		{
			name:  "until changed",
			setup: func(s *fakeecr.Server) { s.SetFault(fakeecr.DefaultAccount, fakeecr.FaultThrottle, 0) },
			want:  []bool{true, true, true, true},
		},
		{
			name:  "every account",
			setup: func(s *fakeecr.Server) { s.SetFault("", fakeecr.FaultThrottle, 1) },
			want:  []bool{true, false},
		},
		{
			name:  "other account",
			setup: func(s *fakeecr.Server) { s.SetFault(other, fakeecr.FaultThrottle, 0) },
			want:  []bool{false, false},
		},
		{
			name: "cleared",
			setup: func(s *fakeecr.Server) {
				s.SetFault(fakeecr.DefaultAccount, fakeecr.FaultThrottle, 0)
				s.SetFault(fakeecr.DefaultAccount, fakeecr.FaultNone, 0)
			},
			want: []bool{false},
		},
		{
			name: "own setting shadows every account",
			setup: func(s *fakeecr.Server) {
				s.SetFault("", fakeecr.FaultThrottle, 0)
				s.SetFault(fakeecr.DefaultAccount, fakeecr.FaultNone, 1)
			},
			want: []bool{false, true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			cfg := loadConfig(t, srv)
			tt.setup(srv)
			for i, wantFail := range tt.want {
				if _, err := getToken(t.Context(), cfg); (err != nil) != wantFail {
					t.Errorf("call %d: error %v, want failure %v", i+1, err, wantFail)
				}
			}
		})
	}
}

func TestFaultTimesConcurrent(t *testing.T) {
	const calls, faults = 20, 5
	srv := newServer(t)
	cfg := loadConfig(t, srv)
	srv.SetFault(fakeecr.DefaultAccount, fakeecr.FaultServerError, faults)
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for range calls {
		wg.Go(func() {
			_, err := getToken(t.Context(), cfg)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed != faults {
		t.Errorf("%d of %d calls failed, want %d", failed, calls, faults)
	}
}

func TestHang(t *testing.T) {
	tests := []struct {
		name    string
		release func(srv *fakeecr.Server, cancel context.CancelFunc)
		wantErr error // nil: any error
	}{
		{name: "caller cancels", release: func(_ *fakeecr.Server, cancel context.CancelFunc) { cancel() }, wantErr: context.Canceled},
		{name: "server closes", release: func(srv *fakeecr.Server, _ context.CancelFunc) { srv.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			cfg := loadConfig(t, srv)
			srv.SetFault(fakeecr.DefaultAccount, fakeecr.FaultHang, 0)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := getToken(ctx, cfg)
				done <- err
			}()
			if err := srv.WaitForCalls(t.Context(), fakeecr.OpGetAuthorizationToken, 1); err != nil {
				t.Fatal(err)
			}
			tt.release(srv, cancel)
			err := <-done
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Errorf("got error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestAssumeRole(t *testing.T) {
	const role = "arn:aws:iam::222222222222:role/pull"
	tests := []struct {
		name        string
		roleARN     string
		requireID   string // "" = no external ID required
		externalID  string
		wantCode    string
		wantAccount string
	}{
		{name: "plain", roleARN: role, wantAccount: "222222222222"},
		{name: "external ID matches", roleARN: role, requireID: "s3cr3t", externalID: "s3cr3t", wantAccount: "222222222222"},
		{name: "external ID missing", roleARN: role, requireID: "s3cr3t", wantCode: "AccessDenied"},
		{name: "external ID wrong", roleARN: role, requireID: "s3cr3t", externalID: "guess", wantCode: "AccessDenied"},
		{name: "other partition and path", roleARN: "arn:aws-cn:iam::333333333333:role/team/pull", wantAccount: "333333333333"},
		{name: "malformed ARN", roleARN: "arn:aws:iam::2222:role/pull", wantCode: "ValidationError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			if tt.requireID != "" {
				srv.RequireExternalID(tt.roleARN, tt.requireID)
			}
			cfg := loadConfig(t, srv)
			provider := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), tt.roleARN, func(o *stscreds.AssumeRoleOptions) {
				if tt.externalID != "" {
					o.ExternalID = aws.String(tt.externalID)
				}
			})
			creds, err := provider.Retrieve(t.Context())
			if tt.wantCode != "" {
				if code, _ := apiErrorOf(t, err); code != tt.wantCode {
					t.Errorf("got %s, want %s", code, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("AssumeRole: %v", err)
			}

			out, err := getToken(t.Context(), cfg, withCredentials(credentials.StaticCredentialsProvider{Value: creds}))
			if err != nil {
				t.Fatalf("GetAuthorizationToken: %v", err)
			}
			if got, want := password(t, out), srv.LastPassword(tt.wantAccount, "us-west-2"); got != want {
				t.Errorf("password %q, LastPassword %q", got, want)
			}
			if got, want := aws.ToString(out.AuthorizationData[0].ProxyEndpoint), "https://"+tt.wantAccount+".dkr.ecr.us-west-2.amazonaws.com"; got != want {
				t.Errorf("proxyEndpoint %q, want %q", got, want)
			}
			want := []fakeecr.Call{
				{Operation: fakeecr.OpAssumeRole, Account: fakeecr.DefaultAccount, Region: "us-west-2", AccessKeyID: fakeecr.DefaultAccessKeyID, RoleARN: tt.roleARN},
				{Operation: fakeecr.OpGetAuthorizationToken, Account: tt.wantAccount, Region: "us-west-2", AccessKeyID: creds.AccessKeyID},
			}
			if got := srv.Calls(); !slices.Equal(got, want) {
				t.Errorf("Calls() = %+v, want %+v", got, want)
			}
		})
	}
}

// replaceBody returns an API option that swaps the request body for body
// after the request was signed.
func replaceBody(body string) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("replaceBody",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				req, err := in.Request.(*smithyhttp.Request).SetStream(strings.NewReader(body))
				if err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, err
				}
				in.Request = req
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	}
}

func TestRejectedRequests(t *testing.T) {
	const role = "arn:aws:iam::222222222222:role/pull"
	tests := []struct {
		name       string
		call       func(ctx context.Context, srv *fakeecr.Server, cfg aws.Config) error
		wantCode   string
		wantStatus int
	}{
		{
			name: "ECR wrong secret",
			call: func(ctx context.Context, _ *fakeecr.Server, cfg aws.Config) error {
				_, err := getToken(ctx, cfg, withCredentials(credentials.NewStaticCredentialsProvider(fakeecr.DefaultAccessKeyID, "wrong", "")))
				return err
			},
			wantCode: "InvalidSignatureException", wantStatus: 403,
		},
		{
			name: "ECR body changed after signing",
			call: func(ctx context.Context, _ *fakeecr.Server, cfg aws.Config) error {
				_, err := getToken(ctx, cfg, func(o *ecr.Options) { o.APIOptions = append(o.APIOptions, replaceBody("[]")) })
				return err
			},
			wantCode: "InvalidSignatureException", wantStatus: 403,
		},
		{
			name: "ECR unknown access key",
			call: func(ctx context.Context, _ *fakeecr.Server, cfg aws.Config) error {
				_, err := getToken(ctx, cfg, withCredentials(credentials.NewStaticCredentialsProvider("AKIAUNKNOWN", fakeecr.DefaultSecretAccessKey, "")))
				return err
			},
			wantCode: "UnrecognizedClientException", wantStatus: 400,
		},
		{
			name: "ECR temporary credentials without session token",
			call: func(ctx context.Context, _ *fakeecr.Server, cfg aws.Config) error {
				creds, err := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), role).Retrieve(ctx)
				if err != nil {
					return err
				}
				_, err = getToken(ctx, cfg, withCredentials(credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, "")))
				return err
			},
			wantCode: "UnrecognizedClientException", wantStatus: 400,
		},
		{
			name: "STS wrong secret",
			call: func(ctx context.Context, _ *fakeecr.Server, cfg aws.Config) error {
				client := sts.NewFromConfig(cfg, func(o *sts.Options) {
					o.Credentials = credentials.NewStaticCredentialsProvider(fakeecr.DefaultAccessKeyID, "wrong", "")
				})
				_, err := stscreds.NewAssumeRoleProvider(client, role).Retrieve(ctx)
				return err
			},
			wantCode: "SignatureDoesNotMatch", wantStatus: 403,
		},
		{
			name: "ECR unknown operation",
			call: func(ctx context.Context, _ *fakeecr.Server, cfg aws.Config) error {
				_, err := ecr.NewFromConfig(cfg).DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{})
				return err
			},
			wantCode: "UnknownOperationException", wantStatus: 400,
		},
		{
			name: "STS unknown action",
			call: func(ctx context.Context, _ *fakeecr.Server, cfg aws.Config) error {
				_, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
				return err
			},
			wantCode: "InvalidAction", wantStatus: 400,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			err := tt.call(t.Context(), srv, loadConfig(t, srv))
			if code, status := apiErrorOf(t, err); code != tt.wantCode || status != tt.wantStatus {
				t.Errorf("got %s (HTTP %d), want %s (HTTP %d)", code, status, tt.wantCode, tt.wantStatus)
			}
			if n := srv.CallCount(fakeecr.OpGetAuthorizationToken); n != 0 {
				t.Errorf("recorded %d GetAuthorizationToken calls, want 0", n)
			}
		})
	}
}

func TestWaitForCalls(t *testing.T) {
	tests := []struct {
		name      string
		operation string
		calls     int
		wait      int
		wantErr   bool
	}{
		{name: "already there", operation: fakeecr.OpGetAuthorizationToken, calls: 2, wait: 2},
		{name: "any operation", calls: 1, wait: 1},
		{name: "too few", operation: fakeecr.OpGetAuthorizationToken, calls: 1, wait: 2, wantErr: true},
		{name: "other operation", operation: fakeecr.OpAssumeRole, calls: 1, wait: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			cfg := loadConfig(t, srv)
			ctx, cancel := context.WithCancel(t.Context())
			waited := make(chan error, 1)
			go func() { waited <- srv.WaitForCalls(ctx, tt.operation, tt.wait) }()
			for range tt.calls {
				if _, err := getToken(t.Context(), cfg); err != nil {
					t.Fatal(err)
				}
			}
			if tt.wantErr {
				cancel() // the waiter cannot be satisfied; release it
			}
			err := <-waited
			cancel()
			if (err != nil) != tt.wantErr {
				t.Errorf("WaitForCalls: %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, context.Canceled) {
				t.Errorf("WaitForCalls: %v, want context.Canceled", err)
			}
		})
	}
}
