package fakeecr

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
)

// ecrTarget is the X-Amz-Target of ECR GetAuthorizationToken (AWS JSON 1.1).
const ecrTarget = "AmazonEC2ContainerRegistry_V20150921." + OpGetAuthorizationToken

// ecrAuthCodes are ECR's answers to authentication failures.
var ecrAuthCodes = authCodes{
	missing:    apiError{status: http.StatusBadRequest, code: "MissingAuthenticationTokenException"},
	badToken:   apiError{status: http.StatusBadRequest, code: "UnrecognizedClientException"},
	badRequest: apiError{status: http.StatusForbidden, code: "InvalidSignatureException"},
}

// authorizationData is one entry of a GetAuthorizationToken answer.
type authorizationData struct {
	AuthorizationToken string `json:"authorizationToken"`
	// ExpiresAt is epoch seconds with millisecond precision, as ECR sends it.
	ExpiresAt     json.Number `json:"expiresAt"`
	ProxyEndpoint string      `json:"proxyEndpoint"`
}

// getAuthorizationTokenOutput is the GetAuthorizationToken answer.
type getAuthorizationTokenOutput struct {
	AuthorizationData []authorizationData `json:"authorizationData"`
}

// serveECR answers an AWS JSON 1.1 request to ECR.
func (s *Server) serveECR(w http.ResponseWriter, r *http.Request) {
	body, c, aerr := s.readAndAuthenticate(r, "ecr", ecrAuthCodes)
	if aerr != nil {
		writeJSONError(w, aerr)
		return
	}
	if target := r.Header.Get("X-Amz-Target"); target != ecrTarget {
		writeJSONError(w, &apiError{http.StatusBadRequest, "UnknownOperationException", "Unknown operation " + target})
		return
	}
	if !json.Valid(body) {
		writeJSONError(w, &apiError{http.StatusBadRequest, "SerializationException", "Request body is not valid JSON."})
		return
	}

	s.mu.Lock()
	fault := s.takeFault(c.account)
	s.record(Call{Operation: OpGetAuthorizationToken, Account: c.account, Region: c.region, AccessKeyID: c.accessKeyID, Fault: fault})
	s.mu.Unlock()

	switch fault {
	case FaultThrottle:
		writeJSONError(w, &apiError{http.StatusBadRequest, "ThrottlingException", "Rate exceeded"})
	case FaultServerError:
		writeJSONError(w, &apiError{http.StatusInternalServerError, "ServerException", "Internal server error."})
	case FaultAccessDenied:
		writeJSONError(w, &apiError{http.StatusBadRequest, "AccessDeniedException",
			"User: arn:aws:iam::" + c.account + ":user/fakeecr is not authorized to perform: ecr:GetAuthorizationToken on resource: * because no identity-based policy allows the ecr:GetAuthorizationToken action"})
	case FaultHang:
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
		panic(http.ErrAbortHandler) // drop the connection: never answer
	case FaultGarbageJSON:
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Write([]byte("<html><body>502 Bad Gateway</body></html>"))
	case FaultEmptyList:
		writeJSON(w, http.StatusOK, getAuthorizationTokenOutput{AuthorizationData: []authorizationData{}})
	case FaultBadBase64:
		writeJSON(w, http.StatusOK, s.authorizationAnswer(c, "%%% not base64 %%%"))
	case FaultNoColon:
		writeJSON(w, http.StatusOK, s.authorizationAnswer(c, base64.StdEncoding.EncodeToString([]byte("AWS"+newPassword(c)))))
	default:
		password := newPassword(c)
		s.mu.Lock()
		s.passwords[c.account+"/"+c.region] = password
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, s.authorizationAnswer(c, base64.StdEncoding.EncodeToString([]byte("AWS:"+password))))
	}
}

// newPassword returns a fresh registry password, long like ECR's, that names
// the caller's account and region.
func newPassword(c caller) string {
	return c.account + "-" + c.region + "-" + randomHex(64)
}

// authorizationAnswer wraps token in a GetAuthorizationToken answer for c
// that expires a token lifetime from now.
func (s *Server) authorizationAnswer(c caller, token string) getAuthorizationTokenOutput {
	s.mu.Lock()
	clock, lifetime := s.clock, s.lifetime
	s.mu.Unlock()
	expiresAt := clock().Add(lifetime) // clock may block; call it unlocked
	return getAuthorizationTokenOutput{AuthorizationData: []authorizationData{{
		AuthorizationToken: token,
		ExpiresAt:          json.Number(strconv.FormatFloat(float64(expiresAt.UnixMilli())/1e3, 'f', -1, 64)),
		ProxyEndpoint:      "https://" + c.account + ".dkr.ecr." + c.region + ".amazonaws.com",
	}}}
}

// writeJSON writes v as an AWS JSON 1.1 answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeJSONError writes e as an AWS JSON 1.1 error.
func writeJSONError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("X-Amzn-ErrorType", e.code)
	writeJSON(w, e.status, struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{e.code, e.message})
}
