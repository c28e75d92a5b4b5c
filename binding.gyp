{
  "targets": [
    {
      "target_name": "xtr_tun",
      "sources": ["dataplane/native/tun.c", "dataplane/native/uring.c", "dataplane/native/workers.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"]
    }
  ]
}
