package fakeecr

import (
	"encoding/xml"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// stsAuthCodes are STS's answers to authentication failures.
var stsAuthCodes = authCodes{
	missing:    apiError{status: http.StatusForbidden, code: "MissingAuthenticationToken"},
	badToken:   apiError{status: http.StatusForbidden, code: "InvalidClientTokenId"},
	badRequest: apiError{status: http.StatusForbidden, code: "SignatureDoesNotMatch"},
}

var (
	// roleARNPattern matches a role ARN in any partition; it captures the
	// partition, the account and the role name (after any path).
	roleARNPattern = regexp.MustCompile(`^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$`)
	// sessionNamePattern matches a valid RoleSessionName.
	sessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
)

// stsCredentials are temporary credentials in an AssumeRole answer.
type stsCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

// assumeRoleResponse is the awsQuery answer to AssumeRole.
type assumeRoleResponse struct {
	XMLName        xml.Name       `xml:"https://sts.amazonaws.com/doc/2011-06-15/ AssumeRoleResponse"`
	Credentials    stsCredentials `xml:"AssumeRoleResult>Credentials"`
	AssumedRoleID  string         `xml:"AssumeRoleResult>AssumedRoleUser>AssumedRoleId"`
	AssumedRoleARN string         `xml:"AssumeRoleResult>AssumedRoleUser>Arn"`
	RequestID      string         `xml:"ResponseMetadata>RequestId"`
}

// stsErrorResponse is an awsQuery error answer.
type stsErrorResponse struct {
	XMLName   xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ ErrorResponse"`
	Type      string   `xml:"Error>Type"`
	Code      string   `xml:"Error>Code"`
	Message   string   `xml:"Error>Message"`
	RequestID string   `xml:"RequestId"`
}

// serveSTS answers an awsQuery request to STS.
func (s *Server) serveSTS(w http.ResponseWriter, r *http.Request) {
	body, c, aerr := s.readAndAuthenticate(r, "sts", stsAuthCodes)
	if aerr != nil {
		writeXMLError(w, aerr)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		writeXMLError(w, &apiError{http.StatusBadRequest, "MalformedQueryString", err.Error()})
		return
	}
	if action := form.Get("Action"); action != OpAssumeRole {
		writeXMLError(w, &apiError{http.StatusBadRequest, "InvalidAction", "Could not find operation " + action + " for version " + form.Get("Version")})
		return
	}
	roleARN := form.Get("RoleArn")

	s.mu.Lock()
	s.record(Call{Operation: OpAssumeRole, Account: c.account, Region: c.region, AccessKeyID: c.accessKeyID, RoleARN: roleARN})
	wantExternalID, externalIDRequired := s.externalIDs[roleARN]
	s.mu.Unlock()

	m := roleARNPattern.FindStringSubmatch(roleARN)
	if m == nil {
		writeXMLError(w, &apiError{http.StatusBadRequest, "ValidationError", "RoleArn " + strconv.Quote(roleARN) + " is not a valid role ARN."})
		return
	}
	partition, account, roleName := m[1], m[2], m[3]
	sessionName := form.Get("RoleSessionName")
	if !sessionNamePattern.MatchString(sessionName) {
		writeXMLError(w, &apiError{http.StatusBadRequest, "ValidationError", "RoleSessionName must be 2 to 64 characters of [\\w+=,.@-]."})
		return
	}
	duration := time.Hour
	if v := form.Get("DurationSeconds"); v != "" {
		secs, err := strconv.Atoi(v)
		if err != nil || secs < 900 || secs > 43200 {
			writeXMLError(w, &apiError{http.StatusBadRequest, "ValidationError", "DurationSeconds must be between 900 and 43200."})
			return
		}
		duration = time.Duration(secs) * time.Second
	}
	if externalIDRequired && form.Get("ExternalId") != wantExternalID {
		writeXMLError(w, &apiError{http.StatusForbidden, "AccessDenied",
			"User: arn:" + partition + ":iam::" + c.account + ":user/fakeecr is not authorized to perform: sts:AssumeRole on resource: " + roleARN})
		return
	}

	creds := stsCredentials{
		AccessKeyID:     "ASIA" + strings.ToUpper(randomHex(8)),
		SecretAccessKey: randomHex(20),
		SessionToken:    "FwoGZXIvYXdzE" + randomHex(128),
		Expiration:      time.Now().Add(duration).UTC().Format(time.RFC3339),
	}
	s.mu.Lock()
	s.keys[creds.AccessKeyID] = principal{secretAccessKey: creds.SecretAccessKey, sessionToken: creds.SessionToken, account: account}
	s.mu.Unlock()

	roleID := "AROA" + strings.ToUpper(randomHex(8))
	writeXML(w, http.StatusOK, assumeRoleResponse{
		Credentials:    creds,
		AssumedRoleID:  roleID + ":" + sessionName,
		AssumedRoleARN: "arn:" + partition + ":sts::" + account + ":assumed-role/" + roleName + "/" + sessionName,
		RequestID:      w.Header().Get("X-Amzn-RequestId"),
	})
}

// writeXML writes v as an XML answer.
func writeXML(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	xml.NewEncoder(w).Encode(v)
}

// writeXMLError writes e as an awsQuery error.
func writeXMLError(w http.ResponseWriter, e *apiError) {
	kind := "Sender"
	if e.status >= http.StatusInternalServerError {
		kind = "Receiver"
	}
	writeXML(w, e.status, stsErrorResponse{Type: kind, Code: e.code, Message: e.message, RequestID: w.Header().Get("X-Amzn-RequestId")})
}
