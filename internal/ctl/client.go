package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to a running daemon over one of its sockets.
type Client struct {
	path string
	hc   *http.Client
}

// Dial returns a Client for the socket at path, after checking that a
// daemon answers there: the error wraps ErrUnreachable (and the system
// error: fs.ErrNotExist, fs.ErrPermission, ECONNREFUSED) when not.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return nil, &UnreachableError{Path: path, Err: unwrapOp(err)}
	}
	c.Close()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
		MaxIdleConns:       2,
		IdleConnTimeout:    30 * time.Second,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}, nil
}

// unwrapOp drops the *net.OpError around a dial error: the path is said
// once, by UnreachableError.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// do sends a request and decodes a JSON answer into out (unless nil).
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("ctl: bad answer from the daemon: %w", err)
	}
	return nil
}

// send sends a request and returns a successful response; an error status
// becomes an *Error.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://posthorn"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnreachableError{Path: c.path, Err: unwrapURL(err)}
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var eb ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
		eb.Error = fmt.Sprintf("the daemon answered %s", resp.Status)
	}
	return nil, &Error{Status: resp.StatusCode, Reason: eb.Reason, Msg: eb.Error}
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return unwrapOp(ue.Err)
	}
	return err
}

func idPath(id string, rest string) string {
	return "/v1/queue/" + url.PathEscape(id) + rest
}

// List returns every queued message, oldest first.
func (c *Client) List(ctx context.Context) ([]Message, error) {
	var out []Message
	err := c.do(ctx, "GET", "/v1/queue", nil, &out)
	return out, err
}

// Show returns one queued message.
func (c *Client) Show(ctx context.Context, id string) (*Message, error) {
	var out Message
	if err := c.do(ctx, "GET", idPath(id, ""), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Content returns the stored message bytes of id, or only its header
// section. The caller closes the reader.
func (c *Client) Content(ctx context.Context, id string, headersOnly bool) (io.ReadCloser, error) {
	p := idPath(id, "/message")
	if headersOnly {
		p += "?part=headers"
	}
	resp, err := c.send(ctx, "GET", p, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Trace returns the recorded history of id.
func (c *Client) Trace(ctx context.Context, id string) (*Trace, error) {
	var out Trace
	if err := c.do(ctx, "GET", idPath(id, "/trace"), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Retry asks for an attempt of id at once. A held message is refused
// (ErrConflict).
func (c *Client) Retry(ctx context.Context, id string) error {
	return c.do(ctx, "POST", idPath(id, "/retry"), nil, nil)
}

// RetryAll asks for an attempt at once of every message not on hold and
// returns how many that is.
func (c *Client) RetryAll(ctx context.Context) (int, error) {
	var out RetryAllResult
	err := c.do(ctx, "POST", "/v1/queue/retry-all", nil, &out)
	return out.Messages, err
}

// Hold keeps id from being attempted until Release.
func (c *Client) Hold(ctx context.Context, id string) error {
	return c.do(ctx, "POST", idPath(id, "/hold"), nil, nil)
}

// Release ends the hold on id; it is attempted at once.
func (c *Client) Release(ctx context.Context, id string) error {
	return c.do(ctx, "POST", idPath(id, "/release"), nil, nil)
}

// Delete removes id from the queue without a bounce.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", idPath(id, ""), nil, nil)
}

// Submit hands a message to the daemon through its submit socket and
// returns the queue id. body is sent as it is read; the daemon turns its
// line endings into CRLF.
func (c *Client) Submit(ctx context.Context, req SubmitRequest, body io.Reader) (string, error) {
	env, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	env = append(env, '\n')
	var out SubmitResult
	if err := c.do(ctx, "POST", "/v1/submit", io.MultiReader(bytes.NewReader(env), body), &out); err != nil {
		return "", err
	}
	if out.ID == "" || strings.ContainsAny(out.ID, " \r\n") {
		return "", errors.New("ctl: the daemon answered without a queue id")
	}
	return out.ID, nil
}
