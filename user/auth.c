/* auth.c — the authentication, ACL and scope stages of a route (auth.h).
 *
 * authenticate tries the route's methods in a fixed order, and the first credential that is valid
 * names the identity the exchange remembers (x->who; the proxy tells the upstream who it is):
 *   api_key  the key from the route's header or query parameter, SHA-256'd (wolfCrypt), looked up
 *            in the snapshot's key table;
 *   jwt      `Authorization: Bearer`: the token's issuer in jwt_issuers, verified against its keys
 *            and policy (jwt.h); the consumer claim names it, its groups are the groups claim's
 *            and those of a consumer of that name; cached per worker (auth_cache.h) until exp;
 *   basic    `Authorization: Basic`: the user of a consumer and its PBKDF2 password, which is slow
 *            on purpose, so it is checked on the offload thread (offload.h) while the exchange
 *            waits, and the result (either way) is cached per worker for a few minutes; an
 *            unknown user is checked against a dummy hash, so that it takes as long;
 *   mtls     the verified client certificate's CN, the name of a consumer.
 * None presented: 401 auth_missing; presented but none valid: 401 auth_failed, both with one
 * WWW-Authenticate line per method (the Bearer one says why a token was refused). What was wrong
 * is logged at most once a second per worker. acl: a consumer in one of deny_groups, or in none of
 * a non-empty allow_groups, is a 403. scopes: each of the route's must be in the identity's scope,
 * else 403 insufficient_scope. */
#include "auth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h> /* first: the build's settings */
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "auth_cache.h"
#include "offload.h"
#include "exchange.h"
#include "log.h"
#include "metrics.h"
#include "shard.h"
#include "tls.h"

#define BASIC_CACHE_SECONDS 300
#define BASIC_MAX 256u /* bytes of a Basic password */

enum outcome { MISSING, FAILED, PASSED, WAITING, BUSY };

static int64_t now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return ts.tv_sec;
}

/* Logs why a credential was refused, at most once a second per worker (a flood of bad
 * credentials must not become a flood of log lines). */
static void log_refusal(struct exchange *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_refusal(struct exchange *x, const char *fmt, ...)
{
	int64_t now = now_seconds();
	if (x->sh->auth_logged_at == now)
		return;
	x->sh->auth_logged_at = now;
	char msg[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++) /* what a client sent stays on its line */
		if ((unsigned char)*p < ' ' || (unsigned char)*p >= 0x7f)
			*p = '?';
	log_warn("auth: route '%s', request %s: %s", x->route->name, x->request_id, msg);
}

/* Counts a credential of the method checked (metrics.h). */
static void count(struct exchange *x, uint32_t method, bool valid)
{
	stat_add(&x->sh->stats->auth[__builtin_ctz(method)][!valid], 1);
}

/* Counts a lookup in the worker's auth cache. */
static void count_lookup(struct exchange *x, uint32_t method, bool hit)
{
	stat_add(&x->sh->stats->auth_cache[__builtin_ctz(method)][!hit], 1);
}

/* Visible ASCII, and none of the bytes of `except`. */
static bool visible(const char *s, const char *except)
{
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= ' ' || *c >= 0x7f || strchr(except, *c))
			return false;
	return true;
}

/* Appends group to who->groups (comma-separated); false when it does not fit. */
static bool add_group(struct auth_identity *who, const char *group)
{
	size_t have = strlen(who->groups), len = strlen(group);
	if (have + (have > 0) + len >= sizeof who->groups)
		return false;
	if (have)
		who->groups[have++] = ',';
	memcpy(who->groups + have, group, len + 1);
	return true;
}

/* No identity: a failure (cached as one). */
static void fail_identity(struct auth_identity *who)
{
	who->method = 0;
	who->name[0] = who->groups[0] = who->scope[0] = '\0';
}

/* The identity of a configured consumer. */
static void identity_of(struct auth_identity *who, uint32_t method, const struct rw_consumer *c)
{
	who->method = method;
	size_t n = strlen(c->name); /* a consumer's name is a config name: it fits */
	n = n < sizeof who->name ? n : sizeof who->name - 1;
	memcpy(who->name, c->name, n);
	who->name[n] = '\0';
	who->groups[0] = who->scope[0] = '\0';
	for (uint32_t i = 0; i < c->ngroups; i++)
		add_group(who, c->groups[i]);
}

static enum outcome by_api_key(struct exchange *x, const struct rw_route_auth *a)
{
	struct slice key = http_header_value(&x->req, a->key_header);
	if (!key.len && a->key_query)
		http_query_param(x->req.query, a->key_query, strlen(a->key_query), &key);
	if (!key.len)
		return MISSING;
	uint8_t digest[AUTH_DIGEST_LEN];
	const struct rw_api_key *k = NULL;
	if (wc_Sha256Hash((const byte *)key.p, key.len, digest) == 0)
		k = auth_find_key(&x->snap->cfg->consumers, digest);
	count(x, AUTH_API_KEY, k != NULL);
	if (!k) {
		log_refusal(x, "unknown API key");
		return FAILED;
	}
	identity_of(&x->who, AUTH_API_KEY, k->consumer);
	return PASSED;
}

/* The token68 after `scheme` in the Authorization header, or an empty slice. */
static struct slice credentials(struct slice authz, const char *scheme)
{
	size_t n = strlen(scheme);
	if (authz.len <= n || !slice_ieq(slice_make(authz.p, n), scheme, n) || authz.p[n] != ' ')
		return (struct slice){ 0 };
	struct slice c = slice_make(authz.p + n, authz.len - n);
	while (c.len && c.p[0] == ' ') {
		c.p++;
		c.len--;
	}
	return c;
}

/* The verified claims into x->who: false (with why) when they cannot go into headers. */
static bool identity_from_claims(struct exchange *x, const struct jwt_claims *cl, const char **why)
{
	struct auth_identity *who = &x->who;
	if (!cl->consumer[0] || !visible(cl->consumer, "")) {
		*why = "the consumer claim is missing or not visible ASCII";
		return false;
	}
	for (const unsigned char *c = (const unsigned char *)cl->scope; *c; c++) {
		if (*c < ' ' || *c >= 0x7f || *c == '"' || *c == '\\') { /* RFC 6749, 3.3 */
			*why = "the scope claim is not space-separated visible ASCII";
			return false;
		}
	}
	who->method = AUTH_JWT;
	memcpy(who->name, cl->consumer, sizeof who->name);
	memcpy(who->scope, cl->scope, sizeof who->scope);
	who->groups[0] = '\0';
	for (unsigned i = 0; i < cl->n_groups; i++) {
		if (!visible(cl->groups[i], ",") || !add_group(who, cl->groups[i])) {
			*why = "a group is not visible ASCII without commas";
			return false;
		}
	}
	const struct rw_consumer *c = auth_find_consumer(&x->snap->cfg->consumers, who->name,
							 strlen(who->name));
	for (uint32_t i = 0; c && i < c->ngroups; i++)
		if (!add_group(who, c->groups[i])) {
			*why = "too many groups";
			return false;
		}
	return true;
}

/* A token not in the cache: verified, and cached when its issuer says so. */
static enum outcome verify_jwt(struct exchange *x, struct slice token, int64_t now,
			       const char **bearer_error)
{
	const struct rw_config *cfg = x->snap->cfg;
	enum jwt_result r;
	const struct rw_jwt_issuer *is = auth_find_issuer(&cfg->jwt_issuers, token.p, token.len, &r);
	if (!is) {
		*bearer_error = jwt_result_name(r);
		log_refusal(x, "jwt: %s", r == JWT_MALFORMED ? "malformed: no payload with an iss" :
			    "no issuer of jwt_issuers made this token");
		return FAILED;
	}
	struct jwt_claims cl;
	char why[160];
	r = jwt_verify(is->keys, token.p, token.len, &is->policy, now, &cl, why,
				       sizeof why);
	if (r != JWT_OK) {
		*bearer_error = jwt_result_name(r);
		log_refusal(x, "jwt: %s: %s", jwt_result_name(r), why);
		return FAILED;
	}
	const char *bad;
	if (!identity_from_claims(x, &cl, &bad)) {
		*bearer_error = "malformed";
		log_refusal(x, "jwt: %s", bad);
		return FAILED;
	}
	if (is->cache)
		auth_cache_put(x->sh->auth_cache, AUTH_JWT, cfg->generation, token.p, token.len,
			       cl.exp, &x->who);
	return PASSED;
}

static enum outcome by_jwt(struct exchange *x, struct slice token, const char **bearer_error)
{
	const struct rw_config *cfg = x->snap->cfg;
	int64_t now = now_seconds();
	bool hit = false;
	if (cfg->jwt_issuers.any_cache) {
		hit = auth_cache_get(x->sh->auth_cache, AUTH_JWT, cfg->generation, token.p, token.len,
				     now, &x->who);
		count_lookup(x, AUTH_JWT, hit);
	}
	if (hit) {
		count(x, AUTH_JWT, true);
		return PASSED;
	}
	enum outcome o = verify_jwt(x, token, now, bearer_error);
	count(x, AUTH_JWT, o == PASSED);
	return o;
}

/* A password check on the offload thread for an exchange waiting in its authenticate stage. */
struct basic_check {
	struct offload_job job;          /* first */
	struct exchange *x;              /* NULL once the exchange ended without the result */
	const struct rw_consumer *c;     /* the user's; NULL: unknown user (checked for the time) */
	struct password_hash hash;       /* a copy: the thread does not touch the snapshot */
	uint8_t digest[AUTH_DIGEST_LEN]; /* the cache key */
	bool ok;
	uint32_t len;
	char password[BASIC_MAX];
};

/* Checked against for an unknown user, so that it takes as long as a known one. */
static struct password_hash unknown_user_hash = { .iterations = PASSWORD_ITERATIONS,
						  .salt_len = 16 };

static void basic_check_work(struct offload_job *job)
{
	struct basic_check *b = (struct basic_check *)job;
	b->ok = password_verify(&b->hash, b->password, b->len) && b->c;
	memset(b->password, 0, sizeof b->password);
}

static enum stage_result after_basic(struct exchange *x, bool presented, const char *bearer_error);

static void basic_check_done(struct offload_job *job)
{
	struct basic_check *b = (struct basic_check *)job;
	struct exchange *x = b->x;
	if (!x) { /* the exchange went while the thread worked */
		free(b);
		return;
	}
	x->stage_state = NULL;
	if (job->aborted) {
		free(b);
		exchange_refuse(x, RW_AUTH_BUSY, NULL, true);
		return;
	}
	count(x, AUTH_BASIC, b->ok);
	if (b->ok)
		identity_of(&x->who, AUTH_BASIC, b->c);
	else
		fail_identity(&x->who);
	auth_cache_put(x->sh->auth_cache, AUTH_BASIC, x->snap->cfg->generation, b->digest,
		       sizeof b->digest, now_seconds() + BASIC_CACHE_SECONDS, &x->who);
	if (!b->ok)
		log_refusal(x, "basic: %s", b->c ? "wrong password" : "unknown user");
	free(b);
	if (x->who.method || after_basic(x, true, NULL) == STAGE_CONTINUE)
		exchange_resume(x);
}

/* The Basic credentials (base64 of user:password): PASSED or FAILED from the cache; otherwise
 * the password is checked on the offload thread and the stage waits (WAITING), or the check
 * cannot be queued (BUSY). */
static enum outcome by_basic(struct exchange *x, struct slice b64)
{
	const struct rw_config *cfg = x->snap->cfg;
	char text[BASIC_MAX + AUTH_NAME_MAX];
	word32 n = sizeof text;
	if (b64.len > (sizeof text / 3) * 4 ||
	    Base64_Decode((const byte *)b64.p, (word32)b64.len, (byte *)text, &n) != 0) {
		log_refusal(x, "basic: credentials are not base64 of at most %zu bytes", sizeof text);
		return FAILED;
	}
	uint8_t digest[AUTH_DIGEST_LEN];
	if (wc_Sha256Hash((const byte *)text, n, digest) != 0)
		return FAILED;
	bool hit = auth_cache_get(x->sh->auth_cache, AUTH_BASIC, cfg->generation, digest,
				  sizeof digest, now_seconds(), &x->who);
	count_lookup(x, AUTH_BASIC, hit);
	if (hit) {
		count(x, AUTH_BASIC, x->who.method != 0);
		return x->who.method ? PASSED : FAILED;
	}
	const char *colon = memchr(text, ':', n);
	size_t pw_len = colon ? n - (size_t)(colon + 1 - text) : 0;
	if (!colon || pw_len > BASIC_MAX) {
		log_refusal(x, "basic: no user:password of at most %u bytes", BASIC_MAX);
		return FAILED;
	}
	struct basic_check *b = malloc(sizeof *b);
	if (!b)
		return BUSY;
	b->job = (struct offload_job){ .work = basic_check_work, .done = basic_check_done,
				       .inbox = &x->sh->inbox };
	b->x = x;
	b->c = auth_find_user(&cfg->consumers, text, (size_t)(colon - text));
	b->hash = b->c ? b->c->basic_password : unknown_user_hash;
	memcpy(b->digest, digest, sizeof digest);
	b->len = (uint32_t)pw_len;
	memcpy(b->password, colon + 1, pw_len);
	memset(text, 0, sizeof text);
	if (!offload_submit(x->sh->offload, &b->job)) {
		memset(b->password, 0, sizeof b->password);
		free(b);
		log_refusal(x, "basic: too many password checks waiting");
		return BUSY;
	}
	x->stage_state = b;
	return WAITING;
}

void auth_cancel(struct exchange *x, const struct stage *st)
{
	struct basic_check *b = x->stage_state;
	if (b)
		b->x = NULL; /* its done callback frees it */
	x->stage_state = NULL;
}

static enum outcome by_certificate(struct exchange *x)
{
	const char *cn = tls_peer_cn(x->down);
	if (!cn)
		return MISSING;
	const struct rw_consumer *c = auth_find_consumer(&x->snap->cfg->consumers, cn, strlen(cn));
	count(x, AUTH_MTLS, c != NULL);
	if (!c) {
		log_refusal(x, "mtls: certificate CN '%.64s' is not a consumer", cn);
		return FAILED;
	}
	identity_of(&x->who, AUTH_MTLS, c);
	return PASSED;
}

/* Refuses with one WWW-Authenticate line per method of the route. */
static void refuse_unauthenticated(struct exchange *x, enum rw_reason r, uint32_t methods,
				   const char *bearer_error)
{
	char lines[512];
	int n = 0;
	if (methods & AUTH_API_KEY)
		n += snprintf(lines + n, sizeof lines - (size_t)n,
			      "WWW-Authenticate: ApiKey realm=\"ringway\"\r\n");
	if ((methods & AUTH_JWT) && bearer_error)
		n += snprintf(lines + n, sizeof lines - (size_t)n,
			      "WWW-Authenticate: Bearer realm=\"ringway\", error=\"invalid_token\", "
			      "error_description=\"%s\"\r\n", bearer_error);
	else if (methods & AUTH_JWT)
		n += snprintf(lines + n, sizeof lines - (size_t)n,
			      "WWW-Authenticate: Bearer realm=\"ringway\"\r\n");
	if (methods & AUTH_BASIC)
		snprintf(lines + n, sizeof lines - (size_t)n,
			 "WWW-Authenticate: Basic realm=\"ringway\", charset=\"UTF-8\"\r\n");
	x->who.method = 0;
	exchange_refuse(x, r, lines[0] ? lines : NULL, false);
}

/* The methods after basic (a client certificate), then the refusal: the stage's result.
 * presented: a credential was presented and refused. */
static enum stage_result after_basic(struct exchange *x, bool presented, const char *bearer_error)
{
	const struct rw_route_auth *a = &x->route->auth;
	enum outcome o;
	if ((a->methods & AUTH_MTLS) && (o = by_certificate(x)) != MISSING) {
		if (o == PASSED)
			return STAGE_CONTINUE;
		presented = true;
	}
	refuse_unauthenticated(x, presented ? RW_AUTH_FAILED : RW_AUTH_MISSING, a->methods,
			       bearer_error);
	return STAGE_ANSWERED;
}

enum stage_result auth_authenticate(struct exchange *x, const struct stage *st)
{
	const struct rw_route_auth *a = &x->route->auth;
	bool presented = false;
	const char *bearer_error = NULL;
	enum outcome o;
	if ((a->methods & AUTH_API_KEY) && (o = by_api_key(x, a)) != MISSING) {
		if (o == PASSED)
			return STAGE_CONTINUE;
		presented = true;
	}
	if (a->methods & (AUTH_JWT | AUTH_BASIC)) {
		struct slice authz = http_header_value(&x->req, "Authorization");
		struct slice token = credentials(authz, "Bearer");
		struct slice basic = credentials(authz, "Basic");
		if ((a->methods & AUTH_JWT) && token.len) {
			if (by_jwt(x, token, &bearer_error) == PASSED)
				return STAGE_CONTINUE;
			presented = true;
		}
		if ((a->methods & AUTH_BASIC) && basic.len) {
			switch (by_basic(x, basic)) {
			case PASSED:
				return STAGE_CONTINUE;
			case WAITING:
				return STAGE_WAIT;
			case BUSY:
				exchange_refuse(x, RW_AUTH_BUSY, "Retry-After: 1\r\n", false);
				return STAGE_ANSWERED;
			default:
				presented = true;
			}
		}
	}
	return after_basic(x, presented, bearer_error);
}

/* Whether one of the identity's groups is one of groups[0..n). */
static bool in_groups(const struct auth_identity *who, char *const *groups, uint32_t n)
{
	const char *p = who->groups;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		for (uint32_t j = 0; j < n; j++)
			if (strlen(groups[j]) == len && !memcmp(groups[j], p, len))
				return true;
		p += len + (comma != NULL);
	}
	return false;
}

enum stage_result auth_acl(struct exchange *x, const struct stage *st)
{
	const struct rw_route_auth *a = &x->route->auth;
	const struct auth_identity *who = &x->who;
	if (!who->method || in_groups(who, a->deny_groups, a->ndeny) ||
	    (a->nallow && !in_groups(who, a->allow_groups, a->nallow))) {
		exchange_refuse(x, RW_ACL_DENIED, NULL, false);
		return STAGE_ANSWERED;
	}
	return STAGE_CONTINUE;
}

/* Whether scope is one of the space-separated scopes of have. */
static bool has_scope(const char *have, const char *scope)
{
	size_t len = strlen(scope);
	for (const char *p = have; *p;) {
		const char *sp = strchr(p, ' ');
		size_t n = sp ? (size_t)(sp - p) : strlen(p);
		if (n == len && !memcmp(p, scope, len))
			return true;
		p += n + (sp != NULL);
	}
	return false;
}

enum stage_result auth_scopes(struct exchange *x, const struct stage *st)
{
	const struct rw_route_auth *a = &x->route->auth;
	uint32_t i = 0;
	while (i < a->nscopes && has_scope(x->who.scope, a->scopes[i]))
		i++;
	if (i == a->nscopes)
		return STAGE_CONTINUE;
	char line[640];
	int n = snprintf(line, sizeof line, "WWW-Authenticate: Bearer realm=\"ringway\", "
			 "error=\"insufficient_scope\", scope=\"");
	for (uint32_t j = 0; j < a->nscopes && n > 0 && (size_t)n < sizeof line; j++)
		n += snprintf(line + n, sizeof line - (size_t)n, "%s%s", j ? " " : "", a->scopes[j]);
	if (n > 0 && (size_t)n + 4 <= sizeof line) {
		memcpy(line + n, "\"\r\n", 4);
	} else { /* too many scopes to list */
		snprintf(line, sizeof line, "WWW-Authenticate: Bearer realm=\"ringway\", "
			 "error=\"insufficient_scope\"\r\n");
	}
	log_refusal(x, "scope '%s' is not in the token's scope", a->scopes[i]);
	exchange_refuse(x, RW_INSUFFICIENT_SCOPE, line, false);
	return STAGE_ANSWERED;
}
