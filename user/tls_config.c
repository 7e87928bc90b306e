/* tls_config.c — owns the tls mappings of the configuration: a listen entry's (certs with their
 * keys, min_version, alpn, client_ca, hsts, handshake_timeout) and an upstream's (verify, ca,
 * sni), their checks, defaults and freeing. The contexts are built as the mapping is read, so a
 * certificate or key that cannot be loaded is an error at its own key that names the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "schema.h"
#include "tls.h"

static const char *const version_words[] = { "1.2", "1.3", NULL };

/* A readable file: its path, or NULL (reported). */
static char *read_file_path(struct loader *ld, yaml_node_t *v, const char *what)
{
	const char *s = schema_expect_scalar(ld, v, what);
	if (!s)
		return NULL;
	if (!*s || access(s, R_OK) != 0) {
		schema_report(ld, v, "%s: cannot read '%s'", what, s);
		return NULL;
	}
	return schema_strdup(ld, s);
}

static void parse_cert_file(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	char **field = schema_field(obj, rule);
	*field = read_file_path(ld, v, rule->key);
}

static const struct rule cert_rules[] = {
	{ .key = "cert", .parse = parse_cert_file, .required = true,
	  .offset = offsetof(struct rw_tls_cert, cert) },
	{ .key = "key", .parse = parse_cert_file, .required = true,
	  .offset = offsetof(struct rw_tls_cert, key) },
	{ 0 }
};

static void parse_certs(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_tls_server *t = obj;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, "tls.certs"))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "tls.certs: at least one certificate is required");
		return;
	}
	t->certs = schema_alloc(ld, schema_item_count(v), sizeof *t->certs);
	if (!t->certs)
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *item = schema_node(ld, *i);
		struct rw_tls_cert *c = &t->certs[t->ncerts++];
		if (schema_expect_kind(ld, item, YAML_MAPPING_NODE, "tls.certs"))
			schema_walk_mapping(ld, item, "tls.certs", cert_rules, c);
	}
}

/* ringway speaks HTTP/1.1: the only protocol it can agree on. */
static void parse_alpn(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, "tls.alpn"))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *item = schema_node(ld, *i);
		const char *s = schema_expect_scalar(ld, item, "tls.alpn");
		if (s && strcmp(s, "http/1.1"))
			schema_report(ld, item, "tls.alpn: '%s' is not served (only http/1.1)", s);
	}
}

static void parse_client_ca(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_tls_server *t = obj;
	t->client_ca = read_file_path(ld, v, "tls.client_ca");
}

static const struct rule hsts_rules[] = {
	{ .key = "max_age", .parse = schema_parse_u32, .min = 1, .max = 2u * 365 * 24 * 3600,
	  .offset = offsetof(struct rw_tls_server, hsts_max_age) },
	{ .key = "include_subdomains", .parse = schema_parse_bool,
	  .offset = offsetof(struct rw_tls_server, hsts_subdomains) },
	{ 0 }
};

static void parse_hsts(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_tls_server *t = obj;
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, "tls.hsts"))
		return;
	t->hsts_max_age = 31536000; /* a year, unless max_age says otherwise */
	schema_walk_mapping(ld, v, "tls.hsts", hsts_rules, t);
	snprintf(t->hsts_header, sizeof t->hsts_header, "max-age=%u%s", t->hsts_max_age,
		 t->hsts_subdomains ? "; includeSubDomains" : "");
}

static const struct rule server_rules[] = {
	{ .key = "certs", .parse = parse_certs, .required = true },
	{ .key = "min_version", .parse = schema_parse_enum, .words = version_words,
	  .offset = offsetof(struct rw_tls_server, min_version) },
	{ .key = "alpn", .parse = parse_alpn },
	{ .key = "client_ca", .parse = parse_client_ca },
	{ .key = "hsts", .parse = parse_hsts },
	{ .key = "handshake_timeout", .parse = schema_parse_duration,
	  .offset = offsetof(struct rw_tls_server, handshake_timeout_ms) },
	{ 0 }
};

void tls_server_config_free(struct rw_tls_server *t)
{
	if (!t)
		return;
	tls_server_free(t->rt);
	for (uint32_t i = 0; i < t->ncerts; i++) {
		free(t->certs[i].cert);
		free(t->certs[i].key);
	}
	free(t->certs);
	free(t->client_ca);
	free(t);
}

struct rw_tls_server *tls_config_server(struct loader *ld, void *node)
{
	yaml_node_t *v = node;
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, "tls"))
		return NULL;
	struct rw_tls_server *t = schema_alloc(ld, 1, sizeof *t);
	if (!t)
		return NULL;
	t->handshake_timeout_ms = 10 * 1000;
	uint32_t errors = ld->nerrors;
	schema_walk_mapping(ld, v, "tls", server_rules, t);
	if (ld->nerrors != errors || ld->out_of_memory || tls_init())
		return t;
	char err[256];
	int bad = -1;
	t->rt = tls_server_build(t, err, sizeof err, &bad);
	if (!t->rt) { /* at the certificate at fault, else at the section */
		yaml_node_pair_t *certs = schema_find_pair(ld, v, "certs");
		yaml_node_t *at = v;
		if (certs && bad >= 0) {
			yaml_node_t *seq = schema_node(ld, certs->value);
			at = schema_node(ld, seq->data.sequence.items.start[bad]);
		}
		schema_report(ld, at, "tls: %s", err);
	}
	return t;
}

static void parse_sni(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_tls_client *t = obj;
	const char *s = schema_expect_scalar(ld, v, "tls.sni");
	if (!s)
		return;
	if (!*s || strlen(s) > 253 || strspn(s, SCHEMA_ALNUM "-.") != strlen(s)) {
		schema_report(ld, v, "tls.sni: '%s' is not a DNS name", s);
		return;
	}
	t->sni = schema_strdup(ld, s);
}

static const struct rule client_rules[] = {
	{ .key = "verify", .parse = schema_parse_bool, .offset = offsetof(struct rw_tls_client, verify) },
	{ .key = "ca", .parse = parse_cert_file, .offset = offsetof(struct rw_tls_client, ca) },
	{ .key = "sni", .parse = parse_sni },
	{ 0 }
};

void tls_client_config_free(struct rw_tls_client *t)
{
	if (!t)
		return;
	tls_client_free(t->rt);
	free(t->ca);
	free(t->sni);
	free(t);
}

struct rw_tls_client *tls_config_client(struct loader *ld, void *node)
{
	yaml_node_t *v = node;
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, "tls"))
		return NULL;
	struct rw_tls_client *t = schema_alloc(ld, 1, sizeof *t);
	if (!t)
		return NULL;
	t->verify = true;
	uint32_t errors = ld->nerrors;
	schema_walk_mapping(ld, v, "tls", client_rules, t);
	if (ld->nerrors != errors || ld->out_of_memory || tls_init())
		return t;
	char err[256];
	t->rt = tls_client_build(t, err, sizeof err);
	if (!t->rt)
		schema_report(ld, v, "tls: %s", err);
	return t;
}
