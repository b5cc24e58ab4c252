package store

import (
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Keys:
//   t/<tenant>                 Tenant
//   tn/<name>                  tenant id (unique names)
//   s/<tenant>/<site>          Site
//   g/<tenant>/<group>         Group
//   n/<kind>/<tenant>/<name>   id (site and group names unique per tenant)

const maxNameLen = 200

func checkName(name string) error {
	if strings.TrimSpace(name) == "" || len(name) > maxNameLen || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%w: name must be 1..%d characters without '/'", ErrInvalid, maxNameLen)
	}
	return nil
}

// CreateTenant creates a tenant with a unique name.
func (s *Store) CreateTenant(name string) (Tenant, error) {
	if err := checkName(name); err != nil {
		return Tenant{}, err
	}
	t := Tenant{ID: newID("tn_"), Name: name, CreatedAt: s.now().UTC()}
	err := s.update(func(txn *badger.Txn) error {
		if ok, err := exists(txn, k("tn", name)); err != nil || ok {
			if ok {
				return fmt.Errorf("tenant %q: %w", name, ErrConflict)
			}
			return err
		}
		if err := txn.Set(k("tn", name), []byte(t.ID)); err != nil {
			return err
		}
		if _, err := addCounter(txn, k("c", "tenants"), 1); err != nil {
			return err
		}
		return setJSON(txn, k("t", t.ID), t)
	})
	if err != nil {
		return Tenant{}, fmt.Errorf("create tenant: %w", err)
	}
	return t, nil
}

// GetTenant returns a tenant by id.
func (s *Store) GetTenant(id string) (Tenant, error) {
	var t Tenant
	err := s.view(func(txn *badger.Txn) error { return getJSON(txn, k("t", id), &t) })
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant %q: %w", id, err)
	}
	return t, nil
}

// ListTenants returns every tenant.
func (s *Store) ListTenants() ([]Tenant, error) {
	var out []Tenant
	err := s.view(func(txn *badger.Txn) (err error) {
		out, err = listJSON[Tenant](txn, prefix("t"))
		return err
	})
	return out, err
}

func tenantExists(txn *badger.Txn, tenant string) error {
	ok, err := exists(txn, k("t", tenant))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("tenant %q: %w", tenant, ErrNotFound)
	}
	return nil
}

// createNamed creates a site or group record under kind ("s" or "g").
func (s *Store) createNamed(kind, tenant, name string, rec func(id string) any) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	id := newID(kind + "_")
	if kind == "g" {
		id = newID("grp_")
	} else if kind == "s" {
		id = newID("st_")
	}
	err := s.update(func(txn *badger.Txn) error {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		nk := k("n", kind, tenant, name)
		if ok, err := exists(txn, nk); err != nil || ok {
			if ok {
				return fmt.Errorf("%q: %w", name, ErrConflict)
			}
			return err
		}
		if err := txn.Set(nk, []byte(id)); err != nil {
			return err
		}
		return setJSON(txn, k(kind, tenant, id), rec(id))
	})
	return id, err
}

// CreateSite creates a site in a tenant.
func (s *Store) CreateSite(tenant, name string) (Site, error) {
	st := Site{TenantID: tenant, Name: name, CreatedAt: s.now().UTC()}
	id, err := s.createNamed("s", tenant, name, func(id string) any { st.ID = id; return st })
	if err != nil {
		return Site{}, fmt.Errorf("create site: %w", err)
	}
	st.ID = id
	return st, nil
}

// CreateGroup creates a group in a tenant.
func (s *Store) CreateGroup(tenant, name string) (Group, error) {
	g := Group{TenantID: tenant, Name: name, CreatedAt: s.now().UTC()}
	id, err := s.createNamed("g", tenant, name, func(id string) any { g.ID = id; return g })
	if err != nil {
		return Group{}, fmt.Errorf("create group: %w", err)
	}
	g.ID = id
	return g, nil
}

// ListSites returns a tenant's sites.
func (s *Store) ListSites(tenant string) ([]Site, error) {
	return listScoped[Site](s, tenant, "s")
}

// ListGroups returns a tenant's groups.
func (s *Store) ListGroups(tenant string) ([]Group, error) {
	return listScoped[Group](s, tenant, "g")
}

func listScoped[T any](s *Store, tenant, kind string) ([]T, error) {
	var out []T
	err := s.view(func(txn *badger.Txn) (err error) {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		out, err = listJSON[T](txn, prefix(kind, tenant))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	return out, nil
}
