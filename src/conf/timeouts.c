#include "conf/timeouts.h"

#define ROW(name, flag, ms, help) {#name, flag, ms, offsetof(gh_cfg_timeouts, name), help},

const gh_cfg_timeout gh_cfg_timeout_table[GH_CFG_NTIMEOUTS] = {GH_CFG_TIMEOUTS(ROW)};

#undef ROW

/* gh_cfg_timeout_field casts: the struct GH_CFG_TIMEOUTS generates holds uint32_t fields only. */
_Static_assert(sizeof(gh_cfg_timeouts) == GH_CFG_NTIMEOUTS * sizeof(uint32_t),
               "gh_cfg_timeouts holds exactly the uint32_t fields of GH_CFG_TIMEOUTS");

void gh_cfg_timeouts_defaults(gh_cfg_timeouts *t)
{
    for (size_t i = 0; i < GH_CFG_NTIMEOUTS; i++)
        *gh_cfg_timeout_field(t, &gh_cfg_timeout_table[i]) = gh_cfg_timeout_table[i].default_ms;
}
