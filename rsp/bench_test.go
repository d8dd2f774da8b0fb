package rsp

import "testing"

// BenchmarkServerCodecs measures the server's codec work for one download
// on the JSON binding: decode the four requests (initiateAuthentication,
// authenticateClient, getBoundProfilePackage, handleNotification) and
// encode the three answers. Signatures and the BPP are not included.
func BenchmarkServerCodecs(b *testing.B) {
	reqs := fullRequests()[:4]
	bodies := make([][]byte, len(reqs))
	for i, r := range reqs {
		body, err := EncodeJSONRequest(r, nil)
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = body
	}
	resps := fullResponses()[:3]
	b.ReportAllocs()
	for b.Loop() {
		for i, r := range reqs {
			if _, _, err := DecodeJSONRequest(r.Function(), bodies[i]); err != nil {
				b.Fatal(err)
			}
		}
		for _, r := range resps {
			if _, err := EncodeJSONResponse(r); err != nil {
				b.Fatal(err)
			}
		}
	}
}
