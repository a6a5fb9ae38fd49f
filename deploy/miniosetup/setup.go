package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/minio/madmin-go/v3"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Config is what to set up and with which credentials.
type Config struct {
	Endpoint     string // host:port
	TLS          bool
	Bucket       string
	Policy       string // the policy's name in MinIO
	RootUser     string // MinIO's root user: creates the rest
	RootPassword string
	AccessKey    string // Parley's user
	SecretKey    string
}

func (c Config) validate() error {
	switch {
	case c.Endpoint == "" || c.Bucket == "" || c.Policy == "":
		return fmt.Errorf("%w: -endpoint, -bucket and -policy must not be empty", errConfig)
	case c.RootUser == "" || c.RootPassword == "":
		return fmt.Errorf("%w: MINIO_ROOT_USER and MINIO_ROOT_PASSWORD must be set", errConfig)
	case len(c.AccessKey) < 3 || len(c.SecretKey) < 8:
		return fmt.Errorf("%w: MINIO_USER_ACCESS_KEY (at least 3 characters) and MINIO_USER_SECRET_KEY (at least 8) must be set", errConfig)
	case c.AccessKey == c.RootUser:
		return fmt.Errorf("%w: Parley's access key must differ from the root user", errConfig)
	}
	return nil
}

// BucketPolicy is the IAM policy Parley's user gets: what libs/objstore
// does with the bucket (head it, find its region, single and multipart
// uploads, list and abort unfinished ones, read, stat and delete objects)
// and nothing else.
func BucketPolicy(bucket string) ([]byte, error) {
	type statement struct {
		Effect   string   `json:"Effect"`
		Action   []string `json:"Action"`
		Resource []string `json:"Resource"`
	}
	p := struct {
		Version   string      `json:"Version"`
		Statement []statement `json:"Statement"`
	}{
		Version: "2012-10-17",
		Statement: []statement{
			{
				Effect:   "Allow",
				Action:   []string{"s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"},
				Resource: []string{"arn:aws:s3:::" + bucket},
			},
			{
				Effect: "Allow",
				Action: []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject",
					"s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"},
				Resource: []string{"arn:aws:s3:::" + bucket + "/*"},
			},
		},
	}
	return json.Marshal(p)
}

// Ensure waits until MinIO answers, then creates whatever of the bucket,
// the policy, the user and the attachment is missing, and resets the
// policy's text and the user's secret key to the configured ones. Running
// it again changes nothing.
func Ensure(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	s3, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.RootUser, cfg.RootPassword, ""),
		Secure: cfg.TLS,
	})
	if err != nil {
		return fmt.Errorf("s3 client: %w", err)
	}
	adm, err := madmin.NewWithOptions(cfg.Endpoint, &madmin.Options{
		Creds:  credentials.NewStaticV4(cfg.RootUser, cfg.RootPassword, ""),
		Secure: cfg.TLS,
	})
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}

	// MinIO answers /minio/health/live before it can take writes; a
	// bucket lookup succeeds only once it is initialized.
	var exists bool
	for {
		exists, err = s3.BucketExists(ctx, cfg.Bucket)
		if err == nil {
			break
		}
		log.Info("waiting for MinIO", "endpoint", cfg.Endpoint, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("minio at %s not ready: %w", cfg.Endpoint, err)
		case <-time.After(time.Second):
		}
	}
	if !exists {
		err := s3.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{})
		if err != nil && minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
			return fmt.Errorf("create bucket %s: %w", cfg.Bucket, err)
		}
		log.Info("created bucket", "bucket", cfg.Bucket)
	}

	doc, err := BucketPolicy(cfg.Bucket)
	if err != nil {
		return err
	}
	if err := adm.AddCannedPolicy(ctx, cfg.Policy, doc); err != nil {
		return fmt.Errorf("policy %s: %w", cfg.Policy, err)
	}
	// AddUser creates the user or sets its secret key: the Secret is the
	// source of truth, so rotating it (and restarting this pod) rotates
	// the key in MinIO.
	if err := adm.AddUser(ctx, cfg.AccessKey, cfg.SecretKey); err != nil {
		return fmt.Errorf("user %s: %w", cfg.AccessKey, err)
	}
	_, err = adm.AttachPolicy(ctx, madmin.PolicyAssociationReq{Policies: []string{cfg.Policy}, User: cfg.AccessKey})
	if err != nil && !alreadyAttached(err) {
		return fmt.Errorf("attach policy %s to %s: %w", cfg.Policy, cfg.AccessKey, err)
	}
	return nil
}

// alreadyAttached reports MinIO's answer to attaching a policy a user
// already has: the state wanted is there.
func alreadyAttached(err error) bool {
	var e madmin.ErrorResponse
	if !errors.As(err, &e) {
		return false
	}
	return e.Code == "XMinioAdminPolicyChangeAlreadyApplied" || e.Code == "XMinioPolicyAlreadyAttached"
}

// Check succeeds when Parley's user can see the bucket.
func Check(ctx context.Context, cfg Config) error {
	s3, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.TLS,
	})
	if err != nil {
		return fmt.Errorf("s3 client: %w", err)
	}
	ok, err := s3.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return fmt.Errorf("bucket %s as %s: %w", cfg.Bucket, cfg.AccessKey, err)
	}
	if !ok {
		return fmt.Errorf("bucket %s does not exist", cfg.Bucket)
	}
	return nil
}
