package refresher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// sdkMaxAttempts bounds the SDK's own quick retries of one call; the
// schedule's backoff takes over after that.
const sdkMaxAttempts = 3

// groupKey identifies the caller of GetAuthorizationToken: the credentials
// (default chain, or an assumed role) and the regional endpoint. Every
// registry with the same key shares one token.
type groupKey struct {
	Region          string
	RoleARN         string
	ExternalID      string
	FIPS, DualStack bool
}

func (k groupKey) String() string {
	s := k.Region
	if k.RoleARN != "" {
		s += ", role " + k.RoleARN
	}
	return s
}

// ECR fetches authorization tokens with aws-sdk-go-v2: the SDK's default
// credential chain and endpoint settings (AWS_ENDPOINT_URL_ECR, FIPS,
// dual-stack, every partition), and STS AssumeRole for registries with a
// role. It keeps one client per caller so that assumed-role credentials
// are cached between refreshes.
type ECR struct {
	base aws.Config

	mu      sync.Mutex
	clients map[groupKey]*ecr.Client
}

// NewECR loads the SDK's default configuration. It makes no AWS call.
func NewECR(ctx context.Context) (*ECR, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRetryer(newRetryer))
	if err != nil {
		return nil, fmt.Errorf("AWS SDK configuration: %w", err)
	}
	return &ECR{base: cfg, clients: map[groupKey]*ecr.Client{}}, nil
}

// newRetryer is the SDK's standard retryer without its client-side retry
// quota: the schedule already backs off, and a drained token bucket would
// otherwise refuse the retries that matter after an outage.
func newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = sdkMaxAttempts
		o.RateLimiter = ratelimit.None
	})
}

// Token calls GetAuthorizationToken once as the caller k and decodes the
// answer.
func (e *ECR) Token(ctx context.Context, k groupKey) (Token, error) {
	out, err := e.client(k).GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		return Token{}, err
	}
	return decodeToken(out.AuthorizationData)
}

func (e *ECR) client(k groupKey) *ecr.Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.clients[k]; ok {
		return c
	}
	cfg := e.base.Copy()
	cfg.Region = k.Region
	if k.RoleARN != "" {
		provider := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), k.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = "ecr-token-refresh"
			if k.ExternalID != "" {
				o.ExternalID = aws.String(k.ExternalID)
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(provider)
	}
	c := ecr.NewFromConfig(cfg, func(o *ecr.Options) {
		if k.FIPS {
			o.EndpointOptions.UseFIPSEndpoint = aws.FIPSEndpointStateEnabled
		}
		if k.DualStack {
			o.EndpointOptions.UseDualStackEndpoint = aws.DualStackEndpointStateEnabled
		}
	})
	e.clients[k] = c
	return c
}

// errorCode returns the AWS error code in err (AccessDeniedException,
// ThrottlingException, …), "Timeout" when a deadline ran out,
// "MalformedResponse" for an unusable answer, "WriteFailed" when a file
// could not be written, or "Error".
func errorCode(err error) string {
	var (
		apiErr   smithy.APIError
		deserErr *smithy.DeserializationError
		writeErr *writeError
	)
	switch {
	case errors.As(err, &apiErr):
		return apiErr.ErrorCode()
	case errors.As(err, &writeErr):
		return "WriteFailed"
	case errors.Is(err, context.DeadlineExceeded):
		return "Timeout"
	case errors.Is(err, errMalformed), errors.As(err, &deserErr):
		return "MalformedResponse"
	default:
		return "Error"
	}
}

// callTimeout bounds one GetAuthorizationToken call, SDK retries included,
// so that a hung endpoint cannot stall a group.
const callTimeout = 30 * time.Second
