package smdp

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/perso-esim/perso/rsp"
)

// ES2Client calls an SM-DP+'s ES2+ functions as an operator: `perso order`
// and the tests. HTTP must present the operator's TLS client certificate.
type ES2Client struct {
	BaseURL     string // https://host[:port]
	HTTP        *http.Client
	RequesterID string // functionRequesterIdentifier
}

// DownloadOrder calls ES2+ DownloadOrder. A Failed answer is an rsp.Status
// error.
func (c *ES2Client) DownloadOrder(ctx context.Context, r rsp.DownloadOrderRequest) (*rsp.DownloadOrderResponse, error) {
	resp, err := c.call(ctx, &r)
	if err != nil {
		return nil, err
	}
	return resp.(*rsp.DownloadOrderResponse), nil
}

// ConfirmOrder calls ES2+ ConfirmOrder.
func (c *ES2Client) ConfirmOrder(ctx context.Context, r rsp.ConfirmOrderRequest) (*rsp.ConfirmOrderResponse, error) {
	resp, err := c.call(ctx, &r)
	if err != nil {
		return nil, err
	}
	return resp.(*rsp.ConfirmOrderResponse), nil
}

// CancelOrder calls ES2+ CancelOrder.
func (c *ES2Client) CancelOrder(ctx context.Context, r rsp.CancelOrderRequest) error {
	_, err := c.call(ctx, &r)
	return err
}

// ReleaseProfile calls ES2+ ReleaseProfile.
func (c *ES2Client) ReleaseProfile(ctx context.Context, iccid string) error {
	_, err := c.call(ctx, &rsp.ReleaseProfileRequest{ICCID: iccid})
	return err
}

func (c *ES2Client) call(ctx context.Context, req rsp.ES2Request) (any, error) {
	f := req.ES2Function()
	*req.ES2Header() = (rsp.RequestHeader{FunctionRequesterIdentifier: c.RequesterID, FunctionCallIdentifier: "perso-" + rand.Text()[:16]})
	body, err := rsp.EncodeES2Request(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+f.Path(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("es2+ %s: %w", f, err)
	}
	hr.Header.Set("Content-Type", rsp.JSONContentType)
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("X-Admin-Protocol", AdminProtocol)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("es2+ %s: %w", f, err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(io.LimitReader(res.Body, DefaultMaxBody))
	if err != nil {
		return nil, fmt.Errorf("es2+ %s: reading the answer: %w", f, err)
	}
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("es2+ %s: the SM-DP+ refused this operator (HTTP %d: %s): check the client certificate and that --requester names the operator it is registered for",
			f, res.StatusCode, strings.TrimSpace(string(out)))
	default:
		return nil, fmt.Errorf("es2+ %s: HTTP %d: %s", f, res.StatusCode, strings.TrimSpace(string(out)))
	}
	resp, st, err := rsp.DecodeES2Response(f, out)
	if err != nil {
		return nil, fmt.Errorf("es2+ %s: %w", f, err)
	}
	if !st.IsZero() {
		return nil, st
	}
	return resp, nil
}
