// SPDX-License-Identifier: Apache-2.0
// The Hugging Face hub client of aplq-convert (see hub.hpp for the cache layout). One run:
//   1. the cache first: refs/<revision> names a commit whose snapshot holds config.json and every
//      weight file (and every tokenizer file is there or known absent): done, no network;
//   2. else GET {endpoint}/api/models/{repo}/revision/{rev}: the commit and the file list;
//   3. HEAD {endpoint}/{repo}/resolve/{commit}/{file} per file, as huggingface_hub does: the
//      ETag (X-Linked-Etag for large files) names the blob, X-Linked-Size or Content-Length its
//      size; relative redirects (a renamed repository) are followed, an absolute one (the CDN)
//      is the answer itself;
//   4. GET the same URL into blobs/<etag>.incomplete, resuming with a Range request, following
//      redirects and sending the token only to the endpoint's own scheme, host and port;
//   5. only when every file is in blobs: the snapshot links, .no_exist markers and refs/<revision>,
//      so a failed run (a gated model without a token, a full disk) leaves no half snapshot.
#include "hub.hpp"
#include "text.hpp"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace aplq {
namespace tools {
namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

const char* const default_endpoint = "https://huggingface.co";
const char* const token_page = "https://huggingface.co/settings/tokens";
const char* const config_file = "config.json";
const char* const index_file = "model.safetensors.index.json";
const char* const single_file = "model.safetensors";
// Fetched when the repository has them, so the snapshot also serves a model runner (tokenizer).
const char* const optional_files[] = {"generation_config.json", "tokenizer.json",
                                      "tokenizer_config.json", "special_tokens_map.json",
                                      "tokenizer.model"};
constexpr std::size_t json_limit = std::size_t(64) << 20;           // API answers and shard indexes
constexpr std::uint64_t progress_min_size = std::uint64_t(1) << 20; // smaller: one line

// A failure to reach the hub at all (as opposed to an answer that refuses): with a complete
// snapshot in the cache, resolve_model falls back on it.
struct network_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// Strings

std::string trim(const std::string& s) {
  const char* space = " \t\r\n";
  const std::size_t b = s.find_first_not_of(space);
  if (b == std::string::npos)
    return {};
  return s.substr(b, s.find_last_not_of(space) - b + 1);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? trim(v) : std::string();
}

// huggingface_hub's reading of boolean variables.
bool env_true(const char* name) {
  const std::string v = lower(env(name));
  return v == "1" || v == "on" || v == "yes" || v == "true";
}

bool is_commit_hash(const std::string& s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A relative path without "", "." or ".." components: safe to place under a snapshot folder.
bool is_safe_relative(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.back() == '/')
    return false;
  for (const char c : p)
    if (static_cast<unsigned char>(c) < 0x20 || c == '\\')
      return false;
  std::size_t b = 0;
  while (b <= p.size()) {
    std::size_t e = p.find('/', b);
    if (e == std::string::npos)
      e = p.size();
    const std::string part = p.substr(b, e - b);
    if (part.empty() || part == "." || part == "..")
      return false;
    b = e + 1;
  }
  return true;
}

// Percent-encodes everything but RFC 3986 unreserved characters (and '/' when asked).
std::string url_encode(const std::string& s, bool keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/'))
      out += ch;
    else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// Signed CDN URLs are long and say nothing useful in a message.
std::string without_query(const std::string& url) { return url.substr(0, url.find('?')); }

std::string human_rate(double bytes_per_s) {
  return human_size(static_cast<std::uint64_t>(bytes_per_s > 0 ? bytes_per_s : 0)) + "/s";
}

bool parse_u64(const std::string& text, std::uint64_t& out) {
  const std::string t = trim(text);
  if (t.empty() || !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  errno = 0;
  const unsigned long long v = std::strtoull(t.c_str(), nullptr, 10);
  if (errno == ERANGE)
    return false;
  out = v;
  return true;
}

// W/"abc" or "abc" -> abc.
std::string normalize_etag(std::string etag) {
  etag = trim(etag);
  if (starts_with(etag, "W/") || starts_with(etag, "w/"))
    etag.erase(0, 2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"')
    etag = etag.substr(1, etag.size() - 2);
  return etag;
}

// An ETag becomes a file name in blobs/: no separators, no dot names, nothing odd.
bool is_usable_etag(const std::string& etag) {
  if (etag.empty() || etag.size() > 200 || etag == "." || etag == "..")
    return false;
  return std::all_of(etag.begin(), etag.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
           c == '+' || c == '=';
  });
}

std::string sys_error(int err) { return std::strerror(err); }

// ---------------------------------------------------------------------------------------------
// Files

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec); // follows the snapshot's symlinks
}

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(p, ec));
}

void make_dirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error("cannot create " + dir.string() + ": " + ec.message());
}

std::string read_small_file(const fs::path& p, std::size_t limit) {
  std::ifstream in(p, std::ios::binary);
  if (!in)
    throw std::runtime_error("cannot read " + p.string() + ": " + sys_error(errno));
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > limit)
      throw std::runtime_error(p.string() + ": larger than " + human_size(limit));
  }
  return text;
}

// Writes `text` to a temporary name beside `p`, then renames it over `p`.
void write_file_atomic(const fs::path& p, const std::string& text) {
  make_dirs(p.parent_path());
  fs::path tmp = p;
  tmp += ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw std::runtime_error("cannot write " + p.string() + ": " + sys_error(errno));
    }
  }
  if (std::rename(tmp.c_str(), p.c_str()) != 0) {
    const int err = errno;
    std::error_code ec;
    fs::remove(tmp, ec);
    throw std::runtime_error("cannot write " + p.string() + ": " + sys_error(err));
  }
}

class unique_fd {
public:
  explicit unique_fd(int fd = -1) : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = fd;
  }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

private:
  int fd_;
};

// An exclusive flock() on <cache>/.locks/<repo folder>/<etag>.lock, the lock huggingface_hub
// takes (through the filelock package) while it writes the same blob.
class blob_lock {
public:
  blob_lock(const fs::path& path, std::ostream& log, const std::string& what) {
    make_dirs(path.parent_path());
    fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd_.get() < 0)
      throw std::runtime_error("cannot create " + path.string() + ": " + sys_error(errno));
    if (::flock(fd_.get(), LOCK_EX | LOCK_NB) == 0)
      return;
    if (errno != EWOULDBLOCK)
      throw std::runtime_error("cannot lock " + path.string() + ": " + sys_error(errno));
    log << "[download] " << what << ": waiting for another process downloading it ("
        << path.string() << ")" << std::endl;
    while (::flock(fd_.get(), LOCK_EX) != 0)
      if (errno != EINTR)
        throw std::runtime_error("cannot lock " + path.string() + ": " + sys_error(errno));
  }
  ~blob_lock() {
    if (fd_.get() >= 0)
      ::flock(fd_.get(), LOCK_UN);
  }

private:
  unique_fd fd_;
};

// ---------------------------------------------------------------------------------------------
// HTTP over libcurl, one request at a time on one handle (which keeps connections alive).

struct response {
  CURLcode curl_code = CURLE_OK;
  std::string curl_error;
  long status = 0;
  std::map<std::string, std::string> headers; // lower-case names, of the last status line
  std::string body;                           // when no sink took it
  std::string location;                       // absolute redirect target, if any
  std::string url;                            // what was asked

  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  bool transport_failed() const { return curl_code != CURLE_OK; }
  bool ok() const { return !transport_failed() && status >= 200 && status < 300; }
};

// Receives the body of a 2xx answer; returns false to abort the transfer.
using body_sink = std::function<bool(const response&, const char*, std::size_t)>;

// Failures that may pass when the transfer is tried again.
bool is_transient(CURLcode c) {
  switch (c) {
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_GOT_NOTHING:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_SSL_CONNECT_ERROR: return true;
  default: return false;
  }
}

bool is_transient_status(long status) { return status == 408 || status == 429 || status >= 500; }

// scheme://host:port, lower-case, with the default port made explicit; empty when unparsable.
std::string origin_of(const std::string& url) {
  std::string out;
  CURLU* u = curl_url();
  if (!u)
    return out;
  char* scheme = nullptr;
  char* host = nullptr;
  char* port = nullptr;
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
    out = lower(scheme) + "://" + lower(host) + ":" + port;
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return out;
}

bool is_http_url(const std::string& url) {
  const std::string l = lower(url);
  return starts_with(l, "http://") || starts_with(l, "https://");
}

class http_client {
public:
  http_client(std::string token, const std::string& endpoint)
      : token_(std::move(token)), token_origin_(origin_of(endpoint)) {
    static const CURLcode global = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (global != CURLE_OK)
      throw std::runtime_error(std::string("libcurl: ") + curl_easy_strerror(global));
    curl_ = curl_easy_init();
    if (!curl_)
      throw std::runtime_error("libcurl: cannot create a handle");
    user_agent_ =
        std::string("aplq-convert libcurl/") + curl_version_info(CURLVERSION_NOW)->version;
  }
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;
  ~http_client() { curl_easy_cleanup(curl_); }

  // A request that follows redirects (at most 10). A HEAD follows only relative ones, as
  // huggingface_hub does: an absolute Location is the hub's CDN, whose answer is this one.
  // `range_from` > 0 asks for the bytes from there on. A 2xx body goes to `sink` when given,
  // else into response::body (which must stay under `body_limit`).
  response request(bool head, std::string url, std::uint64_t range_from, const body_sink* sink,
                   std::size_t body_limit) {
    for (int hop = 0;; ++hop) {
      response r = perform(head, url, range_from, sink, body_limit);
      if (r.transport_failed() || r.status < 300 || r.status >= 400 || r.status == 304 ||
          r.location.empty())
        return r;
      if (head && is_http_url(r.header("location")))
        return r;
      if (hop == 10 || !is_http_url(r.location)) {
        r.curl_code = CURLE_TOO_MANY_REDIRECTS;
        r.curl_error = hop == 10 ? "more than 10 redirects" : "redirect to " + r.location;
        return r;
      }
      url = r.location;
    }
  }

private:
  struct call_state {
    response* r;
    const body_sink* sink;
    std::size_t limit;
    bool too_large = false;
  };

  static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
    const std::size_t len = size * n;
    response& r = *static_cast<call_state*>(user)->r;
    std::string line(data, len);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
      line.pop_back();
    if (starts_with(line, "HTTP/")) { // a new answer (after a 100 Continue, for instance)
      r.headers.clear();
      const std::size_t sp = line.find(' ');
      r.status = sp == std::string::npos ? 0 : std::strtol(line.c_str() + sp + 1, nullptr, 10);
    } else {
      const std::size_t colon = line.find(':');
      if (colon != std::string::npos)
        r.headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
    }
    return len;
  }

  static std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
    const std::size_t len = size * n;
    call_state& st = *static_cast<call_state*>(user);
    response& r = *st.r;
    const bool success = r.status >= 200 && r.status < 300;
    if (success && st.sink)
      return (*st.sink)(r, data, len) ? len : 0;
    if (success) {
      if (r.body.size() + len > st.limit) {
        st.too_large = true;
        return 0;
      }
      r.body.append(data, len);
    } else if (r.body.size() < 65536) { // an error page: keep its beginning for the message
      r.body.append(data, std::min(len, 65536 - r.body.size()));
    }
    return len;
  }

  response perform(bool head, const std::string& url, std::uint64_t range_from,
                   const body_sink* sink, std::size_t body_limit) {
    response r;
    r.url = url;
    call_state st{&r, sink, body_limit};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_USERAGENT, user_agent_.c_str());
    curl_easy_setopt(curl_, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT, 30L);
    // A transfer that stalls (under 1 byte/s for a minute) is broken off, then resumed.
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(curl_, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &http_client::on_header);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &st);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &http_client::on_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &st);
    if (head)
      curl_easy_setopt(curl_, CURLOPT_NOBODY, 1L);
    const std::string range = std::to_string(range_from) + "-";
    if (range_from > 0)
      curl_easy_setopt(curl_, CURLOPT_RANGE, range.c_str());

    curl_slist* headers = nullptr;
    // The token goes to the endpoint only, never to the CDN a file is redirected to.
    const std::string auth = "Authorization: Bearer " + token_;
    if (!token_.empty() && !token_origin_.empty() && origin_of(url) == token_origin_)
      headers = curl_slist_append(headers, auth.c_str());
    if (head) // sizes as stored, as huggingface_hub asks
      headers = curl_slist_append(headers, "Accept-Encoding: identity");
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);

    r.curl_code = curl_easy_perform(curl_);
    curl_slist_free_all(headers);
    if (r.curl_code == CURLE_OK) {
      char* loc = nullptr;
      if (curl_easy_getinfo(curl_, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
        r.location = loc;
    } else if (st.too_large) {
      r.curl_error = "the answer is larger than " + human_size(body_limit);
    } else {
      r.curl_error = errbuf[0] ? errbuf : curl_easy_strerror(r.curl_code);
    }
    return r;
  }

  CURL* curl_ = nullptr;
  std::string token_;
  std::string token_origin_;
  std::string user_agent_;
};

// ---------------------------------------------------------------------------------------------
// Progress: a line every 5 % when the log is not a terminal, one updating line when it is.

class progress_meter {
public:
  progress_meter(std::ostream& log, bool enabled, bool tty, std::string label, std::uint64_t total,
                 std::uint64_t start)
      : log_(log), enabled_(enabled && total >= progress_min_size), tty_(tty),
        label_(std::move(label)), total_(total), start_(start), t0_(clock_type::now()),
        last_draw_(t0_), last_step_(total ? static_cast<int>(start * 20 / total) : 0) {}
  progress_meter(const progress_meter&) = delete;
  progress_meter& operator=(const progress_meter&) = delete;
  ~progress_meter() { clear_line(); } // an error message must not land on the progress line

  // The file starts over from its first byte.
  void restart() {
    start_ = 0;
    last_step_ = 0;
  }

  // Wipes the updating line (terminal) before another line is written.
  void clear_line() {
    if (drawn_)
      log_ << "\r\x1b[K" << std::flush;
    drawn_ = false;
  }

  void update(std::uint64_t done) {
    if (!enabled_)
      return;
    const auto now = clock_type::now();
    if (tty_) {
      if (now - last_draw_ < std::chrono::milliseconds(200))
        return;
      last_draw_ = now;
      log_ << '\r' << line(done, now) << "\x1b[K" << std::flush;
      drawn_ = true;
      return;
    }
    const int step = static_cast<int>(done * 20 / total_);
    if (step > last_step_ && step < 20) {
      last_step_ = step;
      log_ << line(done, now) << std::endl;
    }
  }

  void finish(std::uint64_t done) {
    const auto now = clock_type::now();
    const double s = std::chrono::duration<double>(now - t0_).count();
    clear_line();
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f s", s);
    log_ << "[download] " << label_ << ": " << human_size(done) << " in " << secs << " ("
         << rate(done, now) << ")";
    if (start_ > 0)
      log_ << ", resumed at " << human_size(start_);
    log_ << std::endl;
  }

private:
  std::string line(std::uint64_t done, clock_type::time_point now) const {
    char pct[16];
    std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(done * 100 / total_));
    return "[download] " + label_ + ": " + pct + " of " + human_size(total_) + " (" +
           rate(done, now) + ")";
  }

  std::string rate(std::uint64_t done, clock_type::time_point now) const {
    const double s = std::chrono::duration<double>(now - t0_).count();
    const std::uint64_t bytes = done > start_ ? done - start_ : 0;
    return human_rate(s > 0 ? static_cast<double>(bytes) / s : 0.0);
  }

  std::ostream& log_;
  bool enabled_;
  bool tty_;
  std::string label_;
  std::uint64_t total_;
  std::uint64_t start_;
  clock_type::time_point t0_;
  clock_type::time_point last_draw_;
  int last_step_;
  bool drawn_ = false;
};

// ---------------------------------------------------------------------------------------------
// The repository

struct file_plan {
  explicit file_plan(std::string n) : name(std::move(n)) {}
  std::string name;
  bool cached = false;  // the snapshot already links it to a blob
  bool fetched = false; // in blobs/ by this run
  std::string etag;
  std::uint64_t size = 0;
  bool size_known = false;
};

// The shard names of a safetensors index (sorted, each once).
std::vector<std::string> read_index(const fs::path& path, const std::string& where) {
  const std::string text = read_small_file(path, json_limit);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw std::runtime_error(where + ": not a JSON object");
  const auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object() || wm->empty())
    throw std::runtime_error(where + ": no \"weight_map\" object");
  std::set<std::string> shards;
  for (const auto& item : wm->items()) {
    if (!item.value().is_string())
      throw std::runtime_error(where + ": weight_map entry '" + item.key() + "' is not a string");
    const std::string shard = item.value().get<std::string>();
    if (!is_safe_relative(shard))
      throw std::runtime_error(where + ": weight_map names an unsafe file '" + shard + "'");
    shards.insert(shard);
  }
  return {shards.begin(), shards.end()};
}

struct snapshot_state {
  bool complete = false;            // config.json and every weight file are there
  bool settled = false;             // every optional file is there or known absent
  std::vector<std::string> missing; // what keeps it from being complete
};

snapshot_state inspect_snapshot(const fs::path& dir, const std::string& commit,
                                const std::string& repo) {
  const fs::path snap = dir / "snapshots" / commit;
  const fs::path absent = dir / ".no_exist" / commit;
  snapshot_state st;
  st.settled = true;
  if (!is_file(snap / config_file))
    st.missing.push_back(config_file);
  if (is_file(snap / index_file)) {
    for (const std::string& shard : read_index(snap / index_file, repo + ": " + index_file))
      if (!is_file(snap / shard))
        st.missing.push_back(shard);
  } else if (is_file(snap / single_file)) {
    st.settled = path_exists(absent / index_file); // the repository might have an index instead
  } else {
    st.missing.push_back(std::string(index_file) + " or " + single_file);
  }
  for (const char* f : optional_files)
    if (!is_file(snap / f) && !path_exists(absent / f))
      st.settled = false;
  st.complete = st.missing.empty();
  return st;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size() && i < 4; ++i)
    out += (i ? ", " : "") + v[i];
  if (v.size() > 4)
    out += " and " + std::to_string(v.size() - 4) + " more";
  return out;
}

class repo_session {
public:
  repo_session(const std::string& repo, const hub_options& opt, std::ostream& log)
      : opt_(opt), log_(log), repo_(repo), dir_(repo_cache_dir(opt.cache, repo)),
        tty_((&log == &std::cerr || &log == &std::clog) && ::isatty(STDERR_FILENO)) {
    endpoint_ = opt.endpoint.empty() ? std::string(default_endpoint) : opt.endpoint;
    while (!endpoint_.empty() && endpoint_.back() == '/')
      endpoint_.pop_back();
  }

  const fs::path& dir() const { return dir_; }
  fs::path snapshot(const std::string& commit) const { return dir_ / "snapshots" / commit; }

  // The commit the cache knows for the revision, or "".
  std::string cached_commit() const {
    if (is_commit_hash(opt_.revision))
      return opt_.revision;
    std::ifstream in(dir_ / "refs" / opt_.revision);
    std::string commit;
    std::getline(in, commit);
    commit = trim(commit);
    return is_commit_hash(commit) ? commit : std::string();
  }

  // Everything from the hub into the cache; returns the snapshot directory.
  fs::path download() {
    if (!is_http_url(endpoint_) || origin_of(endpoint_).empty())
      throw std::runtime_error("HF_ENDPOINT '" + endpoint_ + "' is not an http(s) URL");
    http_ = std::make_unique<http_client>(opt_.token, endpoint_);
    const auto t0 = clock_type::now();

    std::set<std::string> files = list_files();
    std::uint64_t fetched = 0; // bytes
    std::size_t count = 0;     // files
    const fs::path snap = snapshot(commit_);
    log_ << "[download] " << repo_ << " @ " << opt_.revision << " (commit " << commit_.substr(0, 12)
         << ") from " << endpoint_ << " into " << snap.string() << std::endl;

    // The files this model needs, the ones it may have, and those it lacks.
    if (!files.count(config_file))
      throw std::runtime_error(msg(std::string("no config.json in the repository at ") +
                                   revision_text() + ": not a transformers model"));
    const bool sharded = files.count(index_file) > 0;
    if (!sharded && !files.count(single_file))
      throw std::runtime_error(msg(std::string("no ") + single_file + " or " + index_file +
                                   " in the repository at " + revision_text() +
                                   ": aplq-convert reads safetensors weights only"));
    std::vector<file_plan> plan;
    std::vector<std::string> absent;
    plan.emplace_back(config_file);
    plan.emplace_back(sharded ? index_file : single_file);
    if (!sharded)
      absent.push_back(index_file);
    for (const char* f : optional_files) {
      if (files.count(f))
        plan.emplace_back(f);
      else
        absent.push_back(f);
    }

    // Metadata first, for all of them: a refusal (a gated model) stops the run before any byte
    // is written.
    for (file_plan& f : plan)
      probe(f, snap);

    if (sharded) { // the shards are known once the index is in
      file_plan& index = plan[1];
      if (!index.cached) {
        fetched += fetch(index);
        index.fetched = true;
        ++count;
      }
      const fs::path index_path = index.cached ? snap / index_file : blob_path(index.etag);
      for (const std::string& shard : read_index(index_path, msg(index_file))) {
        if (!files.count(shard))
          throw std::runtime_error(msg(std::string(index_file) + " names '" + shard +
                                       "', which the repository does not have"));
        plan.emplace_back(shard);
        probe(plan.back(), snap);
      }
    }

    check_free_space(plan);
    for (file_plan& f : plan) {
      if (f.cached || f.fetched)
        continue;
      fetched += fetch(f);
      f.fetched = true;
      ++count;
    }

    // The snapshot, only now that every blob is complete.
    for (const file_plan& f : plan)
      if (!f.cached)
        link_into_snapshot(snap, f);
    for (const std::string& f : absent) {
      const fs::path marker = dir_ / ".no_exist" / commit_ / f;
      if (!path_exists(marker))
        write_file_atomic(marker, "");
    }
    if (opt_.revision != commit_)
      write_file_atomic(dir_ / "refs" / opt_.revision, commit_);

    const snapshot_state st = inspect_snapshot(dir_, commit_, repo_);
    if (!st.complete)
      throw std::runtime_error(
          msg("the snapshot " + snap.string() + " still lacks " + joined(st.missing)));
    const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f s", s);
    log_ << "[download] " << repo_ << ": " << plan.size() << " files ready, " << count
         << " fetched (" << human_size(fetched) << ") in " << secs << std::endl;
    return snap;
  }

private:
  std::string msg(const std::string& text) const { return repo_ + ": " + text; }
  std::string file_msg(const std::string& file, const std::string& text) const {
    return repo_ + ": " + file + ": " + text;
  }
  std::string revision_text() const {
    return opt_.revision == commit_ ? "commit " + commit_
                                    : "revision '" + opt_.revision + "' (commit " + commit_ + ")";
  }
  std::string resolve_url(const std::string& file) const {
    return endpoint_ + "/" + repo_ + "/resolve/" + commit_ + "/" + url_encode(file, true);
  }
  fs::path blob_path(const std::string& etag) const { return dir_ / "blobs" / etag; }
  std::string folder_name() const { return dir_.filename().string(); }

  // A request, tried again on failures that may pass (a broken transfer, HTTP 5xx/429).
  response request_retrying(bool head, const std::string& url, std::size_t limit) {
    for (int attempt = 1;; ++attempt) {
      response r = http_->request(head, url, 0, nullptr, limit);
      const bool retry =
          r.transport_failed() ? is_transient(r.curl_code) : is_transient_status(r.status);
      if (!retry || attempt >= std::max(1, opt_.attempts))
        return r;
      std::this_thread::sleep_for(backoff(attempt));
    }
  }

  static std::chrono::milliseconds backoff(int attempt) {
    return std::chrono::milliseconds(std::min(8000, 250 << std::min(attempt - 1, 5)));
  }

  [[noreturn]] void unreachable(const response& r, const std::string& where) const {
    throw network_error(where + ": cannot reach " + without_query(r.url) + ": " + r.curl_error);
  }

  // GET api/models/{repo}/revision/{rev}: the commit and the names of all files.
  std::set<std::string> list_files() {
    const std::string url =
        endpoint_ + "/api/models/" + repo_ + "/revision/" + url_encode(opt_.revision, false);
    const response r = request_retrying(false, url, json_limit);
    if (r.transport_failed())
      unreachable(r, repo_);
    if (is_transient_status(r.status)) // the hub is down: a complete cache still serves
      throw network_error(http_failure(r, ""));
    if (r.status != 200)
      throw std::runtime_error(http_failure(r, ""));
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw std::runtime_error(
          msg("the hub API answered something that is not JSON (" + without_query(url) + ")"));
    std::string commit;
    if (j.contains("sha") && j["sha"].is_string())
      commit = j["sha"].get<std::string>();
    if (commit.empty())
      commit = r.header("x-repo-commit");
    if (!is_commit_hash(commit))
      throw std::runtime_error(
          msg("the hub API gave no commit for revision '" + opt_.revision + "'"));
    if (is_commit_hash(opt_.revision) && commit != opt_.revision)
      throw std::runtime_error(
          msg("the hub API resolved commit " + opt_.revision + " to " + commit));
    commit_ = commit;
    const auto siblings = j.find("siblings");
    if (siblings == j.end() || !siblings->is_array())
      throw std::runtime_error(msg("the hub API gave no file list (\"siblings\")"));
    std::set<std::string> files;
    for (const auto& s : *siblings)
      if (s.is_object() && s.contains("rfilename") && s["rfilename"].is_string())
        files.insert(s["rfilename"].get<std::string>());
    return files;
  }

  // The HEAD of one file: its blob name (ETag), size and commit; nothing when the snapshot
  // already links it to a blob.
  void probe(file_plan& f, const fs::path& snap) {
    f.cached = is_file(snap / f.name);
    if (f.cached)
      return;
    const response r = request_retrying(true, resolve_url(f.name), 0);
    if (r.transport_failed())
      unreachable(r, repo_ + ": " + f.name);
    const bool cdn = r.status >= 300 && r.status < 400;
    if (!(r.status >= 200 && r.status < 300) && !cdn)
      throw std::runtime_error(http_failure(r, f.name));
    const std::string commit = r.header("x-repo-commit");
    if (!commit.empty() && commit != commit_)
      throw std::runtime_error(file_msg(f.name, "the hub answered for commit " + commit +
                                                    " while the revision is at " + commit_));
    std::string etag = r.header("x-linked-etag");
    if (etag.empty())
      etag = r.header("etag");
    f.etag = normalize_etag(etag);
    if (f.etag.empty())
      throw std::runtime_error(
          file_msg(f.name, "the hub sent no ETag (" + without_query(r.url) + ")"));
    if (!is_usable_etag(f.etag))
      throw std::runtime_error(file_msg(f.name, "unusable ETag '" + f.etag + "'"));
    std::string size = r.header("x-linked-size");
    if (size.empty() && !cdn)
      size = r.header("content-length");
    f.size_known = parse_u64(size, f.size);
  }

  bool blob_complete(const file_plan& f) const {
    struct stat st;
    return ::stat(blob_path(f.etag).c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           (!f.size_known || static_cast<std::uint64_t>(st.st_size) == f.size);
  }

  // Warns when the disk holding the cache has less room than the downloads need.
  void check_free_space(const std::vector<file_plan>& plan) const {
    std::uint64_t need = 0;
    for (const file_plan& f : plan) {
      if (f.cached || !f.size_known || blob_complete(f))
        continue;
      struct stat st;
      const fs::path part = blob_path(f.etag).string() + ".incomplete";
      const std::uint64_t have =
          ::stat(part.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
      need += f.size > have ? f.size - have : 0;
    }
    make_dirs(dir_ / "blobs");
    struct statvfs vfs;
    if (need == 0 || ::statvfs((dir_ / "blobs").c_str(), &vfs) != 0)
      return;
    const std::uint64_t free_bytes =
        static_cast<std::uint64_t>(vfs.f_bavail) * static_cast<std::uint64_t>(vfs.f_frsize);
    if (free_bytes < need)
      log_ << "[download] warning: " << repo_ << " needs " << human_size(need) << " but only "
           << human_size(free_bytes) << " is free in " << (dir_ / "blobs").string() << std::endl;
  }

  // One file into blobs/<etag>, resuming blobs/<etag>.incomplete. Returns the bytes fetched.
  std::uint64_t fetch(const file_plan& f) {
    const fs::path blob = blob_path(f.etag);
    make_dirs(blob.parent_path());
    blob_lock lock(opt_.cache / ".locks" / folder_name() / (f.etag + ".lock"), log_, f.name);
    if (blob_complete(f)) {
      log_ << "[download] " << f.name << ": already in " << blob.string() << std::endl;
      return 0;
    }
    const fs::path part = blob.string() + ".incomplete";
    unique_fd fd(::open(part.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (fd.get() < 0)
      throw std::runtime_error(
          file_msg(f.name, "cannot create " + part.string() + ": " + sys_error(errno)));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0)
      throw std::runtime_error(
          file_msg(f.name, "cannot read " + part.string() + ": " + sys_error(errno)));
    std::uint64_t have = static_cast<std::uint64_t>(st.st_size);
    if (f.size_known && have > f.size)
      have = 0; // truncated below
    std::uint64_t start = have;
    progress_meter meter(log_, opt_.progress, tty_, f.name, f.size_known ? f.size : 0, have);
    auto truncate_all = [&] {
      if (::ftruncate(fd.get(), 0) != 0)
        throw std::runtime_error(
            file_msg(f.name, "cannot truncate " + part.string() + ": " + sys_error(errno)));
      have = start = 0;
      meter.restart();
    };
    if (have == 0)
      truncate_all();

    // The state of one response's body as it lands in the file.
    struct writer_state {
      std::uint64_t base = 0;    // file offset of the body's first byte
      std::uint64_t written = 0; // body bytes written
      bool started = false;
      bool range_mismatch = false;
      int write_errno = 0;
    } w;
    const body_sink sink = [&](const response& r, const char* data, std::size_t n) -> bool {
      if (!w.started) {
        w.started = true;
        if (r.status == 206) { // Content-Range: bytes START-END/TOTAL
          const std::string cr = r.header("content-range");
          const std::size_t sp = cr.find(' '), dash = cr.find('-');
          std::uint64_t from = 0;
          if (sp == std::string::npos || dash == std::string::npos || dash < sp ||
              !parse_u64(cr.substr(sp + 1, dash - sp - 1), from) || from != w.base) {
            w.range_mismatch = true;
            return false;
          }
        } else if (w.base != 0) { // the whole file again: the server ignored the range
          if (::ftruncate(fd.get(), 0) != 0) {
            w.write_errno = errno;
            return false;
          }
          w.base = start = 0;
          meter.restart();
        }
      }
      while (n > 0) {
        const ssize_t k = ::pwrite(fd.get(), data, n, static_cast<off_t>(w.base + w.written));
        if (k < 0) {
          if (errno == EINTR)
            continue;
          w.write_errno = errno;
          return false;
        }
        data += k;
        n -= static_cast<std::size_t>(k);
        w.written += static_cast<std::uint64_t>(k);
      }
      meter.update(w.base + w.written);
      return true;
    };

    const std::string url = resolve_url(f.name);
    const int attempts = std::max(1, opt_.attempts);
    for (int attempt = 1;; ++attempt) {
      if (f.size_known && have == f.size)
        break; // a previous run stopped between the last byte and the rename
      w = writer_state{};
      w.base = have;
      const response r = http_->request(false, url, have, &sink, 0);
      have = w.base + w.written;
      if (w.write_errno) {
        std::string text = "cannot write " + part.string() + ": " + sys_error(w.write_errno);
        if (w.write_errno == ENOSPC)
          text += " (free some space, or set HF_HUB_CACHE to a larger disk; the download "
                  "resumes from here)";
        throw std::runtime_error(file_msg(f.name, text));
      }
      std::string problem;
      bool retry = false;
      if (r.ok() && !w.range_mismatch) {
        break;
      } else if (w.range_mismatch) {
        truncate_all();
        problem = "the server sent another range than asked";
        retry = true;
      } else if (r.transport_failed()) {
        problem = r.curl_error;
        retry = is_transient(r.curl_code) || r.curl_code == CURLE_COULDNT_CONNECT;
      } else if (r.status == 416) { // the partial file is longer than the file: start over
        truncate_all();
        problem = "HTTP 416 for the range from " + human_size(w.base);
        retry = true;
      } else if (is_transient_status(r.status)) {
        problem = "HTTP " + std::to_string(r.status) + " from " + without_query(r.url);
        retry = true;
      } else {
        throw std::runtime_error(http_failure(r, f.name));
      }
      if (!retry || attempt >= attempts)
        throw std::runtime_error(file_msg(
            f.name, "download failed at " + human_size(have) +
                        (f.size_known ? " of " + human_size(f.size) : std::string()) + " after " +
                        std::to_string(attempt) + " attempt" + (attempt > 1 ? "s" : "") + ": " +
                        problem + (have > 0 ? " (run again to resume)" : "")));
      meter.clear_line();
      log_ << "[download] " << f.name << ": " << problem << "; resuming at " << human_size(have)
           << " (attempt " << attempt + 1 << " of " << attempts << ")" << std::endl;
      std::this_thread::sleep_for(backoff(attempt));
    }
    if (f.size_known && have != f.size) {
      truncate_all();
      throw std::runtime_error(file_msg(f.name, "received " + std::to_string(have) +
                                                    " bytes, the hub announced " +
                                                    std::to_string(f.size)));
    }
    if (::fsync(fd.get()) != 0 || ::close(fd.release()) != 0)
      throw std::runtime_error(
          file_msg(f.name, "cannot write " + part.string() + ": " + sys_error(errno)));
    if (std::rename(part.c_str(), blob.c_str()) != 0)
      throw std::runtime_error(
          file_msg(f.name, "cannot rename " + part.string() + ": " + sys_error(errno)));
    meter.finish(have);
    return have - start;
  }

  // snapshots/<commit>/<file> -> ../../blobs/<etag> (one more ../ per folder in <file>).
  void link_into_snapshot(const fs::path& snap, const file_plan& f) const {
    const fs::path link = snap / f.name;
    make_dirs(link.parent_path());
    std::string target;
    for (std::size_t i = 0, n = std::count(f.name.begin(), f.name.end(), '/') + 2; i < n; ++i)
      target += "../";
    target += "blobs/" + f.etag;
    std::error_code ec;
    if (fs::is_symlink(link, ec) && fs::read_symlink(link, ec).string() == target)
      return;
    fs::path tmp = link;
    tmp += ".tmp-" + std::to_string(::getpid());
    fs::remove(tmp, ec);
    fs::create_symlink(target, tmp, ec);
    if (ec)
      throw std::runtime_error(
          file_msg(f.name, "cannot create the link " + link.string() + ": " + ec.message()));
    if (std::rename(tmp.c_str(), link.c_str()) != 0) {
      const int err = errno;
      fs::remove(tmp, ec);
      throw std::runtime_error(
          file_msg(f.name, "cannot create the link " + link.string() + ": " + sys_error(err)));
    }
  }

  // One line for an HTTP answer that refuses; 401/403 say how to get access.
  std::string http_failure(const response& r, const std::string& file) const {
    const std::string where = file.empty() ? repo_ : repo_ + ": " + file;
    const std::string code = r.header("x-error-code");
    const std::string status = "HTTP " + std::to_string(r.status);
    if (r.status == 401 || r.status == 403) {
      const std::string page = endpoint_ + "/" + repo_;
      if (opt_.token.empty())
        return where + ": access denied (" + status + "): the repository is gated or private" +
               (file.empty() ? " (or does not exist)" : "") + ". Create a token at " + token_page +
               ", accept the model's licence on its page " + page +
               " (gated models), and set HF_TOKEN (or HUGGINGFACE_HUB_TOKEN) to the token";
      const std::string source = opt_.token_source.empty() ? "the options" : opt_.token_source;
      if (r.status == 401)
        return where + ": the token from " + source + " was refused (" + status +
               "): it may be invalid or expired; create one at " + token_page +
               " and set HF_TOKEN to it";
      return where + ": access denied with the token from " + source + " (" + status +
             "): accept the model's licence on " + page +
             " while logged in as the token's owner, and check that the token can read it (" +
             token_page + ")";
    }
    if (r.status == 404) {
      if (code == "RevisionNotFound")
        return where + ": revision '" + opt_.revision + "' not found (" + status + ")";
      if (!file.empty() && code != "RepoNotFound")
        return where + ": not in the repository at commit " + commit_ + " (" + status + ")";
      return where + ": repository not found on " + endpoint_ + " (" + status + "); check the id" +
             (opt_.token.empty() ? " (a private repository needs HF_TOKEN)" : "");
    }
    std::string text = where + ": " + status + " from " + without_query(r.url);
    std::string hub = r.header("x-error-message");
    if (!hub.empty())
      text += ": " + hub.substr(0, 200);
    return text;
  }

  const hub_options& opt_;
  std::ostream& log_;
  std::string repo_;
  fs::path dir_;
  bool tty_;
  std::string endpoint_;
  std::string commit_;
  std::unique_ptr<http_client> http_;
};

bool is_valid_repo_id(const std::string& id) {
  if (id.empty() || id.size() > 96 || id.find("--") != std::string::npos ||
      id.find("..") != std::string::npos)
    return false;
  const std::size_t slash = id.find('/');
  if (slash == std::string::npos || id.find('/', slash + 1) != std::string::npos)
    return false;
  for (const std::string& part : {id.substr(0, slash), id.substr(slash + 1)}) {
    if (part.empty() || part.front() == '-' || part.front() == '.' || part.back() == '-' ||
        part.back() == '.')
      return false;
    for (const char c : part)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
        return false;
  }
  return true;
}

fs::path home_dir() {
  const std::string home = env("HOME");
  if (!home.empty())
    return home;
  const passwd* pw = ::getpwuid(::getuid());
  return pw && pw->pw_dir ? fs::path(pw->pw_dir) : fs::path(".");
}

fs::path expand_user(const std::string& p) {
  if (p == "~")
    return home_dir();
  if (starts_with(p, "~/"))
    return home_dir() / p.substr(2);
  return p;
}

} // namespace

hub_options hub_options::from_environment() {
  hub_options o;
  o.endpoint = env("HF_ENDPOINT");
  if (o.endpoint.empty())
    o.endpoint = default_endpoint;
  while (!o.endpoint.empty() && o.endpoint.back() == '/')
    o.endpoint.pop_back();

  fs::path hf_home;
  if (!env("HF_HOME").empty())
    hf_home = expand_user(env("HF_HOME"));
  else if (!env("XDG_CACHE_HOME").empty())
    hf_home = expand_user(env("XDG_CACHE_HOME")) / "huggingface";
  else
    hf_home = home_dir() / ".cache" / "huggingface";

  if (!env("HF_HUB_CACHE").empty())
    o.cache = expand_user(env("HF_HUB_CACHE"));
  else if (!env("HUGGINGFACE_HUB_CACHE").empty()) // the older name
    o.cache = expand_user(env("HUGGINGFACE_HUB_CACHE"));
  else
    o.cache = hf_home / "hub";

  for (const char* name : {"HF_TOKEN", "HUGGINGFACE_HUB_TOKEN"}) {
    o.token = env(name);
    if (!o.token.empty()) {
      o.token_source = name;
      break;
    }
  }
  if (o.token.empty()) { // where `huggingface-cli login` keeps it
    const fs::path file =
        env("HF_TOKEN_PATH").empty() ? hf_home / "token" : expand_user(env("HF_TOKEN_PATH"));
    std::ifstream in(file);
    std::string line;
    if (in && std::getline(in, line) && !trim(line).empty()) {
      o.token = trim(line);
      o.token_source = file.string();
    }
  }

  o.offline = env_true("HF_HUB_OFFLINE");
  o.progress = !env_true("HF_HUB_DISABLE_PROGRESS_BARS");
  return o;
}

bool is_repo_id(const std::string& model) {
  if (!is_valid_repo_id(model))
    return false;
  return !path_exists(model);
}

fs::path repo_cache_dir(const fs::path& cache, const std::string& repo_id) {
  std::string folder = "models--" + repo_id;
  for (std::size_t at = folder.find('/'); at != std::string::npos; at = folder.find('/', at))
    folder.replace(at, 1, "--");
  return cache / folder;
}

fs::path resolve_model(const std::string& repo_id, const hub_options& opt, std::ostream& log) {
  if (!is_valid_repo_id(repo_id))
    throw std::runtime_error("'" + repo_id + "' is not a Hugging Face repository id (ORG/NAME)");
  if (!is_safe_relative(opt.revision))
    throw std::runtime_error(repo_id + ": invalid revision '" + opt.revision + "'");
  if (opt.cache.empty())
    throw std::runtime_error(repo_id + ": no Hugging Face cache directory");

  repo_session session(repo_id, opt, log);
  const std::string commit = session.cached_commit();
  snapshot_state cached;
  if (!commit.empty()) {
    cached = inspect_snapshot(session.dir(), commit, repo_id);
    if (cached.complete && (cached.settled || opt.offline)) {
      log << "[cache] " << repo_id << " @ " << opt.revision << " (commit " << commit.substr(0, 12)
          << "): " << session.snapshot(commit).string() << std::endl;
      return session.snapshot(commit);
    }
  }
  if (opt.offline) {
    if (commit.empty())
      throw std::runtime_error(repo_id + ": revision '" + opt.revision +
                               "' is not in the Hugging Face cache " + session.dir().string() +
                               " and HF_HUB_OFFLINE is set (run once online to fetch it)");
    throw std::runtime_error(
        repo_id + ": the cached snapshot " + session.snapshot(commit).string() + " lacks " +
        joined(cached.missing) + " and HF_HUB_OFFLINE is set (run once online to fetch it)");
  }
  try {
    return session.download();
  } catch (const network_error& e) {
    if (!cached.complete)
      throw;
    log << "[cache] " << repo_id << ": the hub is out of reach (" << e.what()
        << "); using the cached snapshot " << session.snapshot(commit).string() << std::endl;
    return session.snapshot(commit);
  } catch (const std::runtime_error& e) { // every message names the repository
    if (cached.complete) {
      // The weights are all cached; what the hub refused (a token, an optional file) is not
      // needed to convert.
      log << "[cache] " << repo_id << ": the hub refused (" << e.what()
          << "); using the cached snapshot " << session.snapshot(commit).string() << std::endl;
      return session.snapshot(commit);
    }
    if (starts_with(e.what(), repo_id + ": "))
      throw;
    throw std::runtime_error(repo_id + ": " + e.what());
  }
}

} // namespace tools
} // namespace aplq
