/* Queue workers: device I/O on one thread per queue (dataplane/native/workers.c). */
#ifndef XTR_WORKERS_H
#define XTR_WORKERS_H

#include <node_api.h>

/* Adds workersStart, workersWrite and workersStop to the addon's exports. */
void workers_init(napi_env env, napi_value exports);

#endif
