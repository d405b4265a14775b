{
  "targets": [
    {
      "target_name": "hone",
      "sources": ["src/hone.cc", "src/io.cc", "src/compress.cc", "<!@(node -p \"process.env.HONE_BLAS_SRC || ''\")"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!(node -p \"process.env.HONE_GGML_INCLUDE\")",
        "<!@(node -p \"process.env.HONE_BLAS_INCLUDE || ''\")"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "<!@(node -p \"process.env.HONE_BLAS_DEFINES || ''\")"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES", "CLANG_CXX_LANGUAGE_STANDARD": "c++17" },
      "libraries": ["<!@(node -p \"process.env.HONE_GGML_LINK\")", "<!@(node -p \"process.env.HONE_BLAS_LINK || ''\")"],
      "conditions": [
        ["OS=='linux'", { "ldflags": ["-Wl,-rpath,'$$ORIGIN/<!(node -p \"process.env.HONE_GGML_RPATH\")'"] }]
      ]
    }
  ]
}
