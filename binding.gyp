{
  "targets": [
    {
      "target_name": "xtr_tun",
      "sources": ["dataplane/native/tun.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"]
    }
  ]
}
