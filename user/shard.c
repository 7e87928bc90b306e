/* shard.c — a shard's config snapshots: what a snapshot means on this worker (its upstreams over
 * the shard's pools, each listener's frontend by address), held per exchange and let go when the
 * last exchange on an old one ends. */
#include "shard.h"

#include <stdlib.h>
#include <string.h>

static void wsnap_free(struct wsnap *s)
{
	upstream_view_free(&s->ups);
	free(s->listener_fe);
	free(s->listener_entry);
	config_unref(s->cfg);
	free(s);
}

int shard_adopt(struct shard *sh, struct rw_config *cfg)
{
	struct wsnap *s = calloc(1, sizeof *s);
	if (s) {
		s->listener_fe = calloc(sh->nlisteners ? sh->nlisteners : 1, sizeof *s->listener_fe);
		s->listener_entry = calloc(sh->nlisteners ? sh->nlisteners : 1, sizeof *s->listener_entry);
	}
	if (!s || !s->listener_fe || !s->listener_entry ||
	    upstream_view_build(&s->ups, &sh->pools, cfg, sh->id)) {
		if (s) {
			free(s->listener_fe);
			free(s->listener_entry);
		}
		free(s);
		config_unref(cfg);
		return -1;
	}
	s->cfg = cfg;
	s->users = 1;
	for (uint32_t i = 0; i < sh->nlisteners; i++) {
		const struct shard_listener *sl = sh->listeners[i];
		if (!sl || sl->removed)
			continue;
		for (uint32_t f = 0; f < cfg->nfrontends && !s->listener_fe[i]; f++)
			for (uint32_t k = 0; k < cfg->frontends[f].nlistens; k++)
				if (rw_sockaddr_is(&cfg->frontends[f].listens[k], &sl->addr, sl->addrlen)) {
					s->listener_fe[i] = &cfg->frontends[f];
					s->listener_entry[i] = &cfg->frontends[f].listens[k];
				}
	}
	struct wsnap *old = sh->snap;
	sh->snap = s;
	if (old)
		shard_snap_release(old);
	return 0;
}

struct wsnap *shard_snap_hold(struct shard *sh)
{
	sh->snap->users++;
	return sh->snap;
}

void shard_snap_release(struct wsnap *s)
{
	if (--s->users == 0)
		wsnap_free(s);
}
