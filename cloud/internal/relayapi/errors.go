package relayapi

import (
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/cloud/internal/store"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// errPollEnded ends a long poll whose request context ended: the cloud is
// stopping (or the relay went away). It is a normal event, not a fault.
var errPollEnded = errors.New("cloud stopping or relay gone: long poll ended, retry")

// statusOf is the one place errors become HTTP and wire status codes.
func statusOf(err error) (int, cloudv1.Status_Code) {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, cloudv1.Status_CODE_BAD_REQUEST
	case errors.Is(err, errBadEncoding), errors.Is(err, errMethodOrMedia):
		return http.StatusUnsupportedMediaType, cloudv1.Status_CODE_BAD_REQUEST
	case errors.Is(err, errBadRequest), errors.Is(err, store.ErrInvalid):
		return http.StatusBadRequest, cloudv1.Status_CODE_BAD_REQUEST
	case errors.Is(err, errUnauthorized), errors.Is(err, store.ErrUnauthenticated):
		return http.StatusUnauthorized, cloudv1.Status_CODE_UNAUTHENTICATED
	case errors.Is(err, store.ErrKeyInvalid):
		return http.StatusForbidden, cloudv1.Status_CODE_KEY_INVALID
	case errors.Is(err, store.ErrKeyExpired):
		return http.StatusForbidden, cloudv1.Status_CODE_KEY_EXPIRED
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, cloudv1.Status_CODE_NOT_FOUND
	case errors.Is(err, store.ErrClosed), errors.Is(err, errPollEnded):
		return http.StatusServiceUnavailable, cloudv1.Status_CODE_UNAVAILABLE
	default:
		return http.StatusInternalServerError, cloudv1.Status_CODE_INTERNAL
	}
}
