package refresher

import (
	"encoding/base64"
	"encoding/json"
)

// dockerConfig renders a docker config.json with an auths entry for every
// host in creds. encoding/json sorts the keys, so equal input gives equal
// bytes.
func dockerConfig(creds map[string]Token) ([]byte, error) {
	type auth struct {
		Auth string `json:"auth"`
	}
	auths := make(map[string]auth, len(creds))
	for host, t := range creds {
		auths[host] = auth{Auth: base64.StdEncoding.EncodeToString([]byte(t.Username + ":" + t.Password))}
	}
	return json.MarshalIndent(struct {
		Auths map[string]auth `json:"auths"`
	}{auths}, "", "  ")
}
