// Package fileurl names the file endpoints on the gateway's HTTP port
// (docs/protocol.md §18.3 uploads with tus 1.0, §18.4 downloads): the
// gateway routes them, the file service hands them out (an offer's
// upload_path, a download's path) and clients build them. It uses the
// standard library only, so clients can depend on it.
//
//	OPTIONS, POST  /v1/files                         tus discovery, creation
//	HEAD, PATCH, DELETE  /v1/files/<id>              the upload (offset, append, termination)
//	GET, HEAD  /v1/files/<id>/content[?token=<t>]    the download
package fileurl

import "net/url"

// Prefix is where the file endpoints live; tus creation is a POST to it.
const Prefix = "/v1/files"

// TokenParam is the query parameter of a download URL that carries its
// token (§18.4), instead of the Authorization header.
const TokenParam = "token"

// Upload is the path of file id's upload (§18.3: "/v1/files/<file_id>").
// Given a route parameter (":id") it is the route pattern.
func Upload(fileID string) string { return Prefix + "/" + fileID }

// Content is the path of file id's bytes (§18.4). Given a route parameter
// (":id") it is the route pattern.
func Content(fileID string) string { return Upload(fileID) + "/content" }

// Download is the download URL path of file id carrying token, as the
// file service answers FileDownloadRequest (§18.4).
func Download(fileID, token string) string {
	return Content(fileID) + "?" + TokenParam + "=" + url.QueryEscape(token)
}
