package fakeecr

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// apiError is an error answer, rendered by the protocol of the service.
type apiError struct {
	status  int
	code    string
	message string
}

// authCodes are the errors a service answers authentication failures with.
type authCodes struct {
	missing    apiError // no Authorization header
	badToken   apiError // unknown access key or wrong session token
	badRequest apiError // malformed, mis-scoped or wrong signature
}

// withMessage returns a copy of e carrying msg.
func (e apiError) withMessage(msg string) *apiError {
	e.message = msg
	return &e
}

// sigV4Auth is the parsed Authorization header of a SigV4-signed request.
type sigV4Auth struct {
	accessKeyID   string
	region        string
	service       string
	signedHeaders []string
	signature     string
}

// parseSigV4 parses an "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
// Signature=..." header value.
func parseSigV4(header string) (sigV4Auth, bool) {
	algorithm, params, ok := strings.Cut(header, " ")
	if !ok || algorithm != "AWS4-HMAC-SHA256" {
		return sigV4Auth{}, false
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(params, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return sigV4Auth{}, false
	}
	return sigV4Auth{
		accessKeyID:   scope[0],
		region:        scope[2],
		service:       scope[3],
		signedHeaders: strings.Split(fields["SignedHeaders"], ";"),
		signature:     fields["Signature"],
	}, true
}

// caller identifies who signed an authenticated request.
type caller struct {
	accessKeyID string
	account     string
	region      string // of the credential scope
}

// readAndAuthenticate reads r's body and checks that r carries a valid SigV4
// signature for service by credentials the server knows.
func (s *Server) readAndAuthenticate(r *http.Request, service string, codes authCodes) ([]byte, caller, *apiError) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, caller{}, codes.badRequest.withMessage("reading request body: " + err.Error())
	}
	header := r.Header.Get("Authorization")
	if header == "" {
		return nil, caller{}, codes.missing.withMessage("Missing Authentication Token")
	}
	auth, ok := parseSigV4(header)
	if !ok {
		return nil, caller{}, codes.badRequest.withMessage("Authorization header is not a valid AWS4-HMAC-SHA256 signature.")
	}
	s.mu.Lock()
	p, known := s.keys[auth.accessKeyID]
	s.mu.Unlock()
	if !known || r.Header.Get("X-Amz-Security-Token") != p.sessionToken {
		return nil, caller{}, codes.badToken.withMessage("The security token included in the request is invalid.")
	}
	if auth.service != service {
		return nil, caller{}, codes.badRequest.withMessage("Credential should be scoped to correct service: '" + service + "'.")
	}
	signingTime, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return nil, caller{}, codes.badRequest.withMessage("X-Amz-Date is missing or malformed.")
	}
	want, err := expectedSignature(r, body, auth, p, signingTime)
	if err != nil {
		return nil, caller{}, codes.badRequest.withMessage("computing signature: " + err.Error())
	}
	if !hmac.Equal([]byte(want), []byte(auth.signature)) {
		return nil, caller{}, codes.badRequest.withMessage("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
	}
	return body, caller{accessKeyID: auth.accessKeyID, account: p.account, region: auth.region}, nil
}

// expectedSignature re-signs the headers of r that the client signed, with
// the SDK's own signer and the secret the server knows, and returns the
// resulting signature.
func expectedSignature(r *http.Request, body []byte, auth sigV4Auth, p principal, signingTime time.Time) (string, error) {
	req := &http.Request{
		Method:        r.Method,
		URL:           &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Host:          r.Host,
		Header:        http.Header{},
		ContentLength: r.ContentLength,
	}
	for _, h := range auth.signedHeaders {
		if h == "host" || h == "content-length" {
			continue // the signer takes these from Host and ContentLength
		}
		key := http.CanonicalHeaderKey(h)
		if v, ok := r.Header[key]; ok {
			req.Header[key] = slices.Clone(v)
		}
	}
	hash := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: auth.accessKeyID, SecretAccessKey: p.secretAccessKey, SessionToken: p.sessionToken}
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, req, hex.EncodeToString(hash[:]), auth.service, auth.region, signingTime); err != nil {
		return "", err
	}
	signed, _ := parseSigV4(req.Header.Get("Authorization"))
	return signed.signature, nil
}
