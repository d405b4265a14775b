// Asynchronous file I/O for out-of-core training: pread/pwrite on libuv's worker threads, so
// JavaScript never waits on the disk. With `direct`, files are opened with O_DIRECT (the page cache
// is bypassed: no double buffering of what Hone already holds) where the file system allows it;
// reads of any range go through a 4 KiB-aligned buffer, writes must be aligned (Hone lays out its
// own swap files that way). A file system without O_DIRECT (tmpfs, some FUSE) falls back to
// buffered I/O, reported in the result. Errors carry errno's name (ENOSPC, EACCES, ENOENT, …) and
// the path, so the caller can say what to do.
#include <napi.h>

#include "ggml-backend.h"
#include "ggml.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

constexpr size_t kAlign = 4096;

// page-aligned scratch memory straight from mmap, so that it goes back to the OS the moment it is
// freed (malloc would keep large blocks in its arenas, and a streamed run's RSS would grow)
struct Aligned {
    void *p = nullptr;
    size_t n = 0;
    explicit Aligned(size_t bytes) : n(bytes ? bytes : kAlign) {
        p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) p = nullptr;
    }
    ~Aligned() { if (p) munmap(p, n); }
};

std::string ErrName(int e) {
    switch (e) {
        case ENOSPC: return "ENOSPC";
        case EACCES: return "EACCES";
        case EPERM: return "EPERM";
        case ENOENT: return "ENOENT";
        case EROFS: return "EROFS";
        case EIO: return "EIO";
        case EDQUOT: return "EDQUOT";
        case EINVAL: return "EINVAL";
        default: return "E" + std::to_string(e);
    }
}

int OpenFile(const std::string &path, int flags, bool direct, bool *usedDirect) {
    *usedDirect = false;
#ifdef O_DIRECT
    if (direct) {
        int fd = open(path.c_str(), flags | O_DIRECT, 0644);
        if (fd >= 0) { *usedDirect = true; return fd; }
        if (errno != EINVAL) return -1;  // EINVAL: the file system has no O_DIRECT; go buffered
    }
#endif
    return open(path.c_str(), flags, 0644);
}

class IoWork : public Napi::AsyncWorker {
public:
    IoWork(Napi::Env env, bool write, std::string path, uint64_t offset, size_t length, bool direct, ggml_tensor *target = nullptr)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), write_(write), path_(std::move(path)),
          offset_(offset), length_(length), direct_(direct), target_(target) {}

    Napi::Promise Promise() { return deferred_.Promise(); }
    std::string data_;  // bytes to write (copied from JS at submission)
    bool sync_ = true;  // wait until the bytes are on the disk (fdatasync)

protected:
    void Execute() override {
        bool usedDirect = false;
        int fd = OpenFile(path_, write_ ? (O_WRONLY | O_CREAT) : O_RDONLY, direct_, &usedDirect);
        if (fd < 0) return Fail(errno);
        direct_ = usedDirect;
        if (write_) {
            const bool aligned = offset_ % kAlign == 0 && data_.size() % kAlign == 0;
            const char *src = data_.data();
            Aligned buf(aligned && direct_ ? data_.size() : 0);
            if (direct_) {
                if (!aligned) { close(fd); errno = EINVAL; return FailMsg("O_DIRECT writes need 4 KiB-aligned offsets and sizes"); }
                memcpy(buf.p, data_.data(), data_.size());
                src = static_cast<const char *>(buf.p);
            }
            size_t done = 0;
            while (done < data_.size()) {
                ssize_t w = pwrite(fd, src + done, data_.size() - done, static_cast<off_t>(offset_ + done));
                if (w < 0) { if (errno == EINTR) continue; int e = errno; close(fd); return Fail(e); }
                if (w == 0) { close(fd); return Fail(ENOSPC); }
                done += static_cast<size_t>(w);
            }
            if (sync_) {
#ifdef __APPLE__
                if (fsync(fd) != 0) { int e = errno; close(fd); return Fail(e); }
#else
                if (fdatasync(fd) != 0) { int e = errno; close(fd); return Fail(e); }
#endif
            }
        } else {
            const uint64_t start = direct_ ? offset_ / kAlign * kAlign : offset_;
            const uint64_t end = direct_ ? (offset_ + length_ + kAlign - 1) / kAlign * kAlign : offset_ + length_;
            Aligned buf(end - start);
            if (!buf.p) { close(fd); return FailMsg("out of memory for a read buffer"); }
            size_t done = 0;
            const size_t want = end - start;
            while (done < want) {
                ssize_t r = pread(fd, static_cast<char *>(buf.p) + done, want - done, static_cast<off_t>(start + done));
                if (r < 0) { if (errno == EINTR) continue; int e = errno; close(fd); return Fail(e); }
                if (r == 0) break;  // end of file
                done += static_cast<size_t>(r);
            }
            if (done < offset_ - start + length_) { close(fd); errno = 0; return FailMsg("the file ended " + std::to_string(offset_ + length_ - (start + done)) + " bytes early (EOF)"); }
            const char *src = static_cast<char *>(buf.p) + (offset_ - start);
            // into a tensor: straight from the scratch buffer, never through JavaScript's heap
            if (target_) ggml_backend_tensor_set(target_, src, 0, length_);
            else out_.assign(src, length_);
        }
        close(fd);
    }

    void OnOK() override {
        Napi::Env env = Env();
        if (write_) {
            Napi::Object o = Napi::Object::New(env);
            o.Set("direct", direct_);
            deferred_.Resolve(o);
        } else if (target_) {
            deferred_.Resolve(env.Undefined());
        } else {
            Napi::Buffer<char> b = Napi::Buffer<char>::Copy(env, out_.data(), out_.size());
            deferred_.Resolve(b);
        }
    }

    void OnError(const Napi::Error &e) override {
        Napi::Error err = Napi::Error::New(Env(), e.Message());
        err.Set("code", code_);
        err.Set("path", path_);
        deferred_.Reject(err.Value());
    }

private:
    void Fail(int e) {
        code_ = ErrName(e);
        SetError(path_ + ": " + strerror(e) + " (" + code_ + ")");
    }
    void FailMsg(const std::string &m) {
        code_ = m.find("EOF") != std::string::npos ? "EOF" : "EINVAL";
        SetError(path_ + ": " + m);
    }

    Napi::Promise::Deferred deferred_;
    bool write_;
    std::string path_;
    uint64_t offset_;
    size_t length_;
    bool direct_;
    ggml_tensor *target_;
    std::string out_;
    std::string code_ = "EIO";
};

// readAsync(path, offset, length, direct) -> Promise<Buffer>
Napi::Value ReadAsync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3) throw Napi::TypeError::New(env, "readAsync(path, offset, length, direct?)");
    auto *w = new IoWork(env, false, info[0].As<Napi::String>(), static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()),
                         static_cast<size_t>(info[2].As<Napi::Number>().Int64Value()), info.Length() > 3 && info[3].ToBoolean());
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
}

// readIntoTensor(path, offset, tensor, direct) -> Promise<void>: ggml_nbytes(tensor) bytes at offset
// into the tensor's memory (the tensor must not be in use by a graph until the promise settles)
Napi::Value ReadIntoTensor(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[2].IsExternal()) throw Napi::TypeError::New(env, "readIntoTensor(path, offset, tensor, direct?)");
    ggml_tensor *t = info[2].As<Napi::External<ggml_tensor>>().Data();
    if (!t->buffer) throw Napi::Error::New(env, std::string("tensor ") + t->name + " has no memory yet");
    auto *w = new IoWork(env, false, info[0].As<Napi::String>(), static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()), ggml_nbytes(t),
                         info.Length() > 3 && info[3].ToBoolean(), t);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
}

// writeAsync(path, offset, data: Uint8Array, direct, sync = true) -> Promise<{ direct }>; the data is
// copied at once; without `sync` the write is not followed by fdatasync (scratch files)
Napi::Value WriteAsync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[2].IsTypedArray()) throw Napi::TypeError::New(env, "writeAsync(path, offset, data: Uint8Array, direct?)");
    Napi::TypedArray t = info[2].As<Napi::TypedArray>();
    const char *src = static_cast<const char *>(t.ArrayBuffer().Data()) + t.ByteOffset();
    auto *w = new IoWork(env, true, info[0].As<Napi::String>(), static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()), t.ByteLength(),
                         info.Length() > 3 && info[3].ToBoolean());
    w->data_.assign(src, t.ByteLength());
    w->sync_ = info.Length() <= 4 || info[4].ToBoolean();
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
}

// writeFromTensor(path, offset, tensor, direct, sync = true) -> Promise<{ direct }>: the tensor's bytes,
// copied at once (from any device) and zero-padded to 4 KiB so that O_DIRECT can write them; the
// tensor may be reused as soon as the call returns
Napi::Value WriteFromTensor(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[2].IsExternal()) throw Napi::TypeError::New(env, "writeFromTensor(path, offset, tensor, direct?, sync?)");
    ggml_tensor *t = info[2].As<Napi::External<ggml_tensor>>().Data();
    if (!t->buffer) throw Napi::Error::New(env, std::string("tensor ") + t->name + " has no memory yet");
    const size_t n = ggml_nbytes(t), padded = (n + kAlign - 1) / kAlign * kAlign;
    auto *w = new IoWork(env, true, info[0].As<Napi::String>(), static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()), padded,
                         info.Length() > 3 && info[3].ToBoolean());
    w->data_.assign(padded, '\0');
    ggml_backend_tensor_get(t, w->data_.data(), 0, n);
    w->sync_ = info.Length() <= 4 || info[4].ToBoolean();
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
}

}  // namespace

namespace hone {
void InitIo(Napi::Env env, Napi::Object exports) {
    exports.Set("readAsync", Napi::Function::New(env, ReadAsync));
    exports.Set("writeAsync", Napi::Function::New(env, WriteAsync));
    exports.Set("readIntoTensor", Napi::Function::New(env, ReadIntoTensor));
    exports.Set("writeFromTensor", Napi::Function::New(env, WriteFromTensor));
    exports.Set("ioAlignment", Napi::Number::New(env, static_cast<double>(kAlign)));
}
}  // namespace hone
