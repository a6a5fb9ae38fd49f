// Package files serves the gateway's file endpoints over HTTP (Fiber):
// resumable uploads speaking tus 1.0 (core, creation, termination,
// checksum, expiration) and downloads with Range, so any tus client can
// upload and any HTTP client can download and resume (docs/protocol.md
// §18).
//
// The file service owns every upload's state; this package moves the
// bytes. A PATCH asks the file service for the upload's state and a lease
// (subject.FileUploadBegin), reads the body one part at a time into a
// buffer (so a transfer holds at most one part in memory), continues the
// file's running SHA-256, writes each whole part to storage as a multipart
// part and commits it (subject.FileUploadCommit). Bytes after the last
// whole part are kept as a small "tail" object when the request ends, also
// when the client was cut off, so a resumed upload continues exactly where
// the bytes stopped; only a gateway that dies loses its buffered part (at
// most one part is sent again). The commit that reaches the file's size
// makes the file service check the SHA-256 and complete the upload.
package files

import (
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/fileurl"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Storage is what the gateway needs from the object store: writing parts
// and tails, reading files and tails back, deleting tails. A store that
// also has Available() error (objstore.Gate) is asked before each file
// request: while it answers an error, file requests are answered 503 with
// Retry-After.
type Storage interface {
	PutPart(ctx context.Context, key, uploadID string, number int, r io.Reader, size int64) (objstore.Part, error)
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (objstore.Info, error)
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	Delete(ctx context.Context, key string) error
}

// Options configure the handlers.
type Options struct {
	NC        *nats.Conn
	Storage   Storage
	Log       *slog.Logger
	GatewayID string
	// RequestTimeout bounds each NATS request; IdleTimeout each read of a
	// request body or write of a response (a transfer may take as long as
	// it keeps moving).
	RequestTimeout time.Duration
	IdleTimeout    time.Duration
	// MaxSize is announced as Tus-Max-Size (the file service enforces it).
	MaxSize int64
	// MaxUploads bounds the PATCH requests written at once (each holds up
	// to three parts in memory); more are answered 503 with Retry-After.
	// 0: no bound.
	MaxUploads int
	// MaxUploadsPerUser bounds the PATCH requests one user writes at once
	// through this gateway, so one user cannot take every slot; more are
	// answered 503 with Retry-After. 0: no bound.
	MaxUploadsPerUser int
	// MinRate and RateWindow are the slowest a PATCH body may arrive: it
	// must bring MinRate × RateWindow bytes within each RateWindow (from
	// when it began, then from when the previous window's bytes were in),
	// else it is ended as if cut off (what arrived is kept) and answered
	// 503, Connection: close: a body trickling in cannot hold a slot.
	// MinRate 0: no floor (IdleTimeout still bounds each read).
	MinRate    int
	RateWindow time.Duration
	// LiveFallback is how often a held live download asks the file
	// service again when no progress event came (0: DefaultLiveFallback).
	LiveFallback time.Duration
	// ClientAddr is the address of a request's client (the gateway's
	// trusted-proxy rules); nil: the peer's.
	ClientAddr func(*fiber.Ctx) net.Addr
	// CORSOrigins are the web origins ("https://chat.example.com") whose
	// pages may call these endpoints from a browser: their Origin is
	// echoed in Access-Control-Allow-Origin. Empty: none.
	CORSOrigins []string
}

const tusVersion = "1.0.0"

// Handler serves the endpoints.
type Handler struct {
	o        Options
	writing  chan struct{} // one slot per PATCH being written; nil: unbounded
	draining chan struct{} // closed by Drain
	drainOne sync.Once

	// available says whether the store's server is up (nil: always).
	available func() error

	mu      sync.Mutex     // guards writers
	writers map[string]int // PATCHes being written, per user id
	freed   chan struct{}  // closed and replaced whenever a user's slot frees; guarded by mu
}

// Drain makes uploads in progress stop reading their bodies, keep what
// they read (stored and committed, the rest as a tail) and answer 503 with
// Retry-After: the gateway is going away, and its clients resume through
// another one having lost only what was still in flight in the network.
// New uploads are refused the same way. Call it before shutting down.
func (h *Handler) Drain() { h.drainOne.Do(func() { close(h.draining) }) }

// errDraining ends an upload's body when the gateway drains.
var errDraining = errors.New("the gateway is shutting down")

// New returns a Handler; Register adds its routes to an app.
func New(o Options) (*Handler, error) {
	if o.NC == nil || o.Storage == nil {
		return nil, errors.New("files: NATS connection and storage required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RequestTimeout <= 0 || o.IdleTimeout <= 0 {
		return nil, errors.New("files: timeouts must be positive")
	}
	if o.ClientAddr == nil {
		o.ClientAddr = func(c *fiber.Ctx) net.Addr { return c.Context().RemoteAddr() }
	}
	if o.LiveFallback <= 0 {
		o.LiveFallback = DefaultLiveFallback
	}
	if o.MinRate < 0 || o.MinRate > 0 && o.RateWindow <= 0 {
		return nil, errors.New("files: a minimum upload rate needs a positive window")
	}
	h := &Handler{o: o, draining: make(chan struct{}), writers: map[string]int{}, freed: make(chan struct{})}
	if a, ok := o.Storage.(interface{ Available() error }); ok {
		h.available = a.Available
	}
	if o.MaxUploads > 0 {
		h.writing = make(chan struct{}, o.MaxUploads)
	}
	return h, nil
}

// Register adds the routes (protocol/fileurl: the upload at fileurl.Upload,
// created by a POST to fileurl.Prefix, the bytes at fileurl.Content) to
// app. The app must stream request bodies
// (fiber.Config.StreamRequestBody) and run reqbody.Guard before every
// route: handlers read bodies only through reqbody.Of.
func (h *Handler) Register(app *fiber.App) {
	app.Options(fileurl.Prefix, h.options)
	app.Options(fileurl.Prefix+"/*", h.options)
	app.Post(fileurl.Prefix, h.storageUp, h.create)
	app.Post(fileurl.Prefix+"/", h.storageUp, h.create)
	app.Head(fileurl.Upload(":id"), h.storageUp, h.head)
	app.Patch(fileurl.Upload(":id"), h.storageUp, h.patch)
	app.Delete(fileurl.Upload(":id"), h.storageUp, h.terminate)
	app.Get(fileurl.Content(":id"), h.storageUp, h.download)
	app.Head(fileurl.Content(":id"), h.storageUp, h.download)
}

// StorageRetryAfter is the Retry-After, in seconds, of the answers while
// file storage is down.
const StorageRetryAfter = 5

// storageUp answers 503 with Retry-After while the store says its server
// is down (objstore.Gate): every file endpoint but discovery waits for
// storage; chat does not.
func (h *Handler) storageUp(c *fiber.Ctx) error {
	if h.available != nil {
		if err := h.available(); err != nil {
			return h.storageDown(c)
		}
	}
	return c.Next()
}

// storageDown answers that file storage is unavailable. It is not logged
// per request: the store logs when it goes down and comes back.
func (h *Handler) storageDown(c *fiber.Ctx) error {
	h.tusHeaders(c)
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(StorageRetryAfter))
	c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
	return c.Status(http.StatusServiceUnavailable).SendString("UNAVAILABLE: file storage is unavailable; retry after a few seconds\n")
}

// tusHeaders are on every answer: the tus version, nosniff (no body here
// is to be sniffed into something a browser runs) and CORS for the
// configured origins; cors reports whether the request's Origin is one.
func (h *Handler) tusHeaders(c *fiber.Ctx) (cors bool) {
	c.Set("Tus-Resumable", tusVersion)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	cors = h.corsOrigin(c)
	if cors {
		c.Set(fiber.HeaderAccessControlExposeHeaders, "Upload-Offset, Upload-Length, Upload-Expires, Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Content-Range, Content-Disposition, X-Parley-Sha256, X-Parley-File-Id, X-Parley-Live, Retry-After")
	}
	return cors
}

// corsOrigin allows the request's Origin when it is one of CORSOrigins
// (echoed, never "*"), and reports whether it did. With any origin
// configured, answers vary by Origin.
func (h *Handler) corsOrigin(c *fiber.Ctx) bool {
	if len(h.o.CORSOrigins) == 0 {
		return false
	}
	c.Set(fiber.HeaderVary, fiber.HeaderOrigin)
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" || !slices.Contains(h.o.CORSOrigins, origin) {
		return false
	}
	c.Set(fiber.HeaderAccessControlAllowOrigin, origin)
	return true
}

// options answers tus discovery (and CORS preflight for the configured
// origins).
func (h *Handler) options(c *fiber.Ctx) error {
	cors := h.tusHeaders(c)
	c.Set("Tus-Version", tusVersion)
	c.Set("Tus-Extension", "creation,termination,checksum,expiration")
	c.Set("Tus-Max-Size", strconv.FormatInt(h.o.MaxSize, 10))
	c.Set("Tus-Checksum-Algorithm", checksumAlgorithms)
	if cors {
		c.Set(fiber.HeaderAccessControlAllowMethods, "POST, GET, HEAD, PATCH, DELETE, OPTIONS")
		c.Set(fiber.HeaderAccessControlAllowHeaders, "Authorization, Content-Type, Upload-Length, Upload-Metadata, Upload-Offset, Upload-Checksum, Upload-Defer-Length, Tus-Resumable, Range, X-HTTP-Method-Override")
		c.Set(fiber.HeaderAccessControlMaxAge, "600")
	}
	return c.SendStatus(http.StatusNoContent)
}

// fail answers an error: status and a one-line text body; server-side
// failures are logged.
func (h *Handler) fail(c *fiber.Ctx, status int, msg string) error {
	h.tusHeaders(c)
	if status >= 500 {
		h.o.Log.Warn("file request failed", "method", c.Method(), "path", c.Path(), "status", status, "err", msg)
	}
	c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
	return c.Status(status).SendString(msg + "\n")
}

// failErr answers a service error with its HTTP status: tus's 460 for a
// checksum mismatch, 409 for a conflict, 413 too large or over the quota,
// 429 rate limited (with Retry-After), 401/403/404 ...
func (h *Handler) failErr(c *fiber.Ctx, err error) error {
	e := errcode.From(err)
	status := http.StatusInternalServerError
	switch e.Code {
	case parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED,
		parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED:
		status = http.StatusUnauthorized
	case parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, parleyv1.ErrorCode_ERROR_CODE_BLOCKED:
		status = http.StatusForbidden
	case parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND:
		status = http.StatusNotFound
	case parleyv1.ErrorCode_ERROR_CODE_FILE_TOO_LARGE, parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED:
		status = http.StatusRequestEntityTooLarge
	case parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED:
		status = http.StatusTooManyRequests
		c.Set(fiber.HeaderRetryAfter, strconv.FormatUint(uint64(max(1, (e.RetryAfter+999)/1000)), 10))
	case parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH:
		status = 460
	case parleyv1.ErrorCode_ERROR_CODE_CONFLICT:
		status = http.StatusConflict
	case parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, parleyv1.ErrorCode_ERROR_CODE_INVALID_NAME:
		status = http.StatusBadRequest
	case parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, parleyv1.ErrorCode_ERROR_CODE_TIMEOUT:
		status = http.StatusServiceUnavailable
		if e.RetryAfter > 0 {
			c.Set(fiber.HeaderRetryAfter, strconv.FormatUint(uint64((e.RetryAfter+999)/1000), 10))
		}
	}
	return h.fail(c, status, errcode.ShortName(e.Code)+": "+e.Message)
}

// identity authenticates a request by its session token (Authorization:
// Bearer), asking auth: the caller, and the headers that name them and
// this request's origin to the file service (identity.Header).
func (h *Handler) identity(c *fiber.Ctx) (identity.Caller, nats.Header, error) {
	auth := c.Get(fiber.HeaderAuthorization)
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || tok == "" {
		return identity.Caller{}, nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "send the session token as Authorization: Bearer <token>")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), h.o.RequestTimeout)
	defer cancel()
	var reply internalv1.AuthReply
	if err := rpc.Request(ctx, h.o.NC, subject.AuthVerify, nil, &internalv1.TokenVerifyRequest{Token: tok}, &reply); err != nil {
		return identity.Caller{}, nil, err
	}
	s := reply.GetSession()
	if s.GetUserId() == "" {
		return identity.Caller{}, nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INTERNAL, "auth answered without a session")
	}
	who := identity.Caller{UserID: s.GetUserId(), SessionID: s.GetSessionId(), Username: s.GetUsername()}
	return who, identity.Header(who, identity.Origin{RemoteAddr: h.o.ClientAddr(c).String(), GatewayID: h.o.GatewayID}), nil
}

// call sends one request to the file service.
func (h *Handler) call(ctx context.Context, subj string, hdr nats.Header, req, resp proto.Message) error {
	ctx, cancel := context.WithTimeout(ctx, h.o.RequestTimeout)
	defer cancel()
	return rpc.Request(ctx, h.o.NC, subj, hdr, req, resp)
}

// create is tus creation: Upload-Length and Upload-Metadata (filename,
// filetype, sha256 as hex, and to = a username or conversation = a private
// chat or group id) make a file offer; the reply's Location is the upload.
func (h *Handler) create(c *fiber.Ctx) error {
	h.tusHeaders(c)
	if c.Get("Tus-Resumable") != tusVersion {
		return h.fail(c, http.StatusPreconditionFailed, "Tus-Resumable: 1.0.0 required")
	}
	_, hdr, err := h.identity(c)
	if err != nil {
		return h.failErr(c, err)
	}
	if c.Get("Upload-Defer-Length") != "" {
		return h.fail(c, http.StatusBadRequest, "Upload-Defer-Length is not supported: give Upload-Length")
	}
	size, err := strconv.ParseUint(c.Get("Upload-Length"), 10, 64)
	if err != nil {
		return h.fail(c, http.StatusBadRequest, "Upload-Length must be a non-negative integer")
	}
	if h.o.MaxSize > 0 && size > uint64(h.o.MaxSize) {
		return h.fail(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("the file is too large (at most %d bytes)", h.o.MaxSize))
	}
	meta, err := parseMetadata(c.Get("Upload-Metadata"))
	if err != nil {
		return h.fail(c, http.StatusBadRequest, err.Error())
	}
	req := &parleyv1.OfferFileRequest{
		Conversation: meta["conversation"], ToUsername: meta["to"], Name: meta["filename"], Size: size,
		ContentType: meta["filetype"], Sha256: strings.ToLower(meta["sha256"]),
	}
	var offer parleyv1.FileOffer
	if err := h.call(c.UserContext(), subject.FileOffer, hdr, req, &offer); err != nil {
		return h.failErr(c, err)
	}
	c.Set(fiber.HeaderLocation, offer.GetUploadPath())
	c.Set("Upload-Expires", httpDate(offer.GetFile().GetExpiresAtUnixMs()))
	c.Set("X-Parley-File-Id", offer.GetFile().GetFileId())
	return c.SendStatus(http.StatusCreated)
}

func httpDate(unixMs int64) string {
	return time.UnixMilli(unixMs).UTC().Format(http.TimeFormat)
}

// head is tus HEAD: the upload's offset and length.
func (h *Handler) head(c *fiber.Ctx) error {
	h.tusHeaders(c)
	c.Set(fiber.HeaderCacheControl, "no-store")
	if c.Get("Tus-Resumable") != tusVersion {
		return h.fail(c, http.StatusPreconditionFailed, "Tus-Resumable: 1.0.0 required")
	}
	_, hdr, err := h.identity(c)
	if err != nil {
		return h.failErr(c, err)
	}
	var st internalv1.UploadState
	if err := h.call(c.UserContext(), subject.FileUploadStatus, hdr, &internalv1.UploadStatusRequest{FileId: c.Params("id")}, &st); err != nil {
		return h.failErr(c, err)
	}
	c.Set("Upload-Offset", strconv.FormatUint(st.GetOffset(), 10))
	c.Set("Upload-Length", strconv.FormatUint(st.GetSize(), 10))
	if st.GetState() == parleyv1.FileState_FILE_STATE_UPLOADING {
		c.Set("Upload-Expires", httpDate(st.GetExpiresAtUnixMs()))
	}
	return c.SendStatus(http.StatusOK)
}

// terminate is tus DELETE: the sender cancels the upload (or removes the
// file).
func (h *Handler) terminate(c *fiber.Ctx) error {
	h.tusHeaders(c)
	if c.Get("Tus-Resumable") != tusVersion {
		return h.fail(c, http.StatusPreconditionFailed, "Tus-Resumable: 1.0.0 required")
	}
	_, hdr, err := h.identity(c)
	if err != nil {
		return h.failErr(c, err)
	}
	if err := h.call(c.UserContext(), subject.FileTerminate, hdr, &internalv1.FileTerminateRequest{FileId: c.Params("id")}, nil); err != nil {
		return h.failErr(c, err)
	}
	return c.SendStatus(http.StatusNoContent)
}

// restoreHash continues a marshalled SHA-256 state.
func restoreHash(state []byte) (hash.Hash, error) {
	hh := sha256.New()
	if err := hh.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, err
	}
	return hh, nil
}

func marshalHash(hh hash.Hash) []byte {
	b, _ := hh.(encoding.BinaryMarshaler).MarshalBinary()
	return b
}

// contentDisposition names the download for the browser; the name is
// already sanitised by the file service.
func contentDisposition(name string) string {
	ascii := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, name)
	return fmt.Sprintf(`attachment; filename="%s"; filename*=UTF-8''%s`, ascii, url.PathEscape(name))
}
