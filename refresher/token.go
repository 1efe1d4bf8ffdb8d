package refresher

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
)

// Token is a decoded ECR authorization token: the docker credentials for
// every registry the caller may reach in one region.
type Token struct {
	// Username is the user name to log in with (AWS).
	Username string
	// Password is the password; it is never logged.
	Password string
	// ExpiresAt is when ECR stops accepting the password.
	ExpiresAt time.Time
}

// String hides the password so that a Token printed by mistake leaks
// nothing.
func (t Token) String() string {
	return fmt.Sprintf("Token{Username:%s Password:<redacted> ExpiresAt:%s}", t.Username, t.ExpiresAt.Format(time.RFC3339))
}

// errMalformed marks an ECR answer that cannot be used.
var errMalformed = errors.New("malformed GetAuthorizationToken answer")

// decodeToken validates and decodes the first entry of a
// GetAuthorizationToken answer: base64, then user:password split at the
// first colon, both non-empty, with an expiry.
func decodeToken(data []types.AuthorizationData) (Token, error) {
	if len(data) == 0 || data[0].AuthorizationToken == nil {
		return Token{}, fmt.Errorf("%w: no authorizationData", errMalformed)
	}
	raw, err := base64.StdEncoding.DecodeString(*data[0].AuthorizationToken)
	if err != nil {
		return Token{}, fmt.Errorf("%w: authorizationToken is not base64", errMalformed)
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	switch {
	case !ok:
		return Token{}, fmt.Errorf("%w: authorizationToken is not user:password", errMalformed)
	case user == "" || pass == "":
		return Token{}, fmt.Errorf("%w: authorizationToken has an empty user or password", errMalformed)
	case data[0].ExpiresAt == nil:
		return Token{}, fmt.Errorf("%w: no expiresAt", errMalformed)
	}
	return Token{Username: user, Password: pass, ExpiresAt: *data[0].ExpiresAt}, nil
}
