// CPU kernel of the scheduler op: prefix survival per request (core/schedule.h), then the
// admission path (CpuPath: a lazy k-way merge of the rows, switching to a radix sort of the
// rest when a scan goes far), scanned by the shared schedule_scan.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../core/schedule.h"
#include "../schedule_args.h"

namespace dspark {
namespace cpu {
namespace {

// Keys of the radix-sorted path: ascending ~bits(a) is descending a (a >= 0 doubles order
// like their bit patterns).
inline uint64_t descending_key(double a) {
  uint64_t bits;
  std::memcpy(&bits, &a, sizeof(bits));
  return ~bits;
}

inline double key_value(uint64_t key) {
  const uint64_t bits = ~key;
  double a;
  std::memcpy(&a, &bits, sizeof(a));
  return a;
}

// Sorts candidates listed in (j, r) order by descending a, ties in listing order: a stable
// LSD radix sort (8-bit digits) of (high 32 bits of the key << 32 | listing index) by its
// high half, skipping digits shared by every key (sign and high exponent bits of
// probabilities), then runs whose high halves tie are finished by insertion sort on the full
// key (rare and short: the values agree to 20 mantissa bits). Returns the listing indices.
std::vector<uint32_t> sort_listing(const std::vector<uint64_t>& key) {
  const size_t n = key.size();
  std::vector<uint64_t> el(n), el2(n);
  for (size_t i = 0; i < n; ++i) el[i] = ((key[i] >> 32) << 32) | static_cast<uint64_t>(i);
  if (n > 1) {
    uint32_t hist[4][256] = {};
    for (size_t i = 0; i < n; ++i)
      for (int p = 0; p < 4; ++p) ++hist[p][(el[i] >> (32 + 8 * p)) & 0xFF];
    for (int p = 0; p < 4; ++p) {
      uint32_t* h = hist[p];
      const int shift = 32 + 8 * p;
      if (h[(el[0] >> shift) & 0xFF] == n) continue;  // one bucket holds every key
      uint32_t sum = 0;
      for (int d = 0; d < 256; ++d) {
        const uint32_t c = h[d];
        h[d] = sum;
        sum += c;
      }
      for (size_t i = 0; i < n; ++i) el2[h[(el[i] >> shift) & 0xFF]++] = el[i];
      el.swap(el2);
    }
  }
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(el[i]);
  // Finish runs whose high halves tie: by full key, then listing index (insertion sort).
  for (size_t lo = 0; lo < n;) {
    size_t hi = lo + 1;
    while (hi < n && (el[hi] >> 32) == (el[lo] >> 32)) ++hi;
    for (size_t i = lo + 1; i < hi; ++i) {
      const uint32_t item = order[i];
      size_t m = i;
      while (m > lo && (key[order[m - 1]] > key[item] ||
                        (key[order[m - 1]] == key[item] && order[m - 1] > item))) {
        order[m] = order[m - 1];
        --m;
      }
      order[m] = item;
    }
    lo = hi;
  }
  return order;
}

// The admission path, produced in order. Each row's candidates are already in path order, so
// a binary min-heap over the R row heads yields the globally sorted path lazily (the causal
// scan usually stops after a few candidates: O(R + n log R)). A scan that goes on past
// `switch_after` candidates (the global search, a large capacity, a flat SPS curve) gets the
// rest of the path by one radix sort of the remaining candidates instead, listed in (j, r)
// order so that the stable sort breaks ties of a by smaller j, then smaller r.
class CpuPath {
 public:
  CpuPath(const double* a, int64_t k, const int64_t* count, int64_t rows, int64_t switch_after)
      : a_(a), k_(k), rows_(rows), count_(count), pos_(rows, 0), switch_after_(switch_after) {
    if (switch_after_ == 0) {
      sort_rest();
      return;
    }
    heap_.reserve(rows);
    popped_.reserve(std::min<int64_t>(switch_after_, rows * k));
    for (int64_t r = 0; r < rows; ++r)
      if (count[r] > 0) heap_.push_back(static_cast<int32_t>(r));
    for (int64_t i = static_cast<int64_t>(heap_.size()) / 2 - 1; i >= 0; --i) sift_down(i);
  }

  // The prefix survival of the next candidate of the path (callers stay within its length).
  double next_a() {
    if (!sorted_ && static_cast<int64_t>(popped_.size()) == switch_after_) sort_rest();
    if (sorted_) return key_value(listed_key_[order_[cursor_++]]);
    const int32_t r = heap_[0];
    const double val = head_a(r);
    popped_.push_back(r);
    if (++pos_[r] < count_[r]) {
      sift_down(0);
    } else {
      heap_[0] = heap_.back();
      heap_.pop_back();
      if (!heap_.empty()) sift_down(0);
    }
    return val;
  }

  // Request of the i-th candidate of the path (i below the number produced so far).
  int32_t row_of(int64_t i) const {
    const int64_t h = static_cast<int64_t>(popped_.size());
    return i < h ? popped_[i] : listed_row_[order_[i - h]];
  }

 private:
  double head_a(int32_t r) const { return a_[r * k_ + pos_[r]]; }
  bool before(int32_t x, int32_t y) const {
    return candidate_before(head_a(x), pos_[x], x, head_a(y), pos_[y], y);
  }
  void sift_down(int64_t i) {
    const int64_t n = static_cast<int64_t>(heap_.size());
    const int32_t item = heap_[i];
    while (true) {
      int64_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
      if (!before(heap_[child], item)) break;
      heap_[i] = heap_[child];
      i = child;
    }
    heap_[i] = item;
  }
  void sort_rest() {
    sorted_ = true;
    int64_t remaining = 0;
    for (int64_t r = 0; r < rows_; ++r) remaining += count_[r] - pos_[r];
    listed_key_.reserve(remaining);
    listed_row_.reserve(remaining);
    for (int64_t j = 0; j < k_; ++j)
      for (int64_t r = 0; r < rows_; ++r)
        if (j >= pos_[r] && j < count_[r]) {
          listed_key_.push_back(descending_key(a_[r * k_ + j]));
          listed_row_.push_back(static_cast<int32_t>(r));
        }
    order_ = sort_listing(listed_key_);
  }

  const double* a_;
  int64_t k_, rows_;
  const int64_t* count_;
  std::vector<int64_t> pos_;
  int64_t switch_after_;
  std::vector<int32_t> heap_, popped_;
  bool sorted_ = false;
  int64_t cursor_ = 0;
  std::vector<uint64_t> listed_key_;  // remaining candidates in (j, r) order
  std::vector<int32_t> listed_row_;
  std::vector<uint32_t> order_;       // their path order
};

// Heap pops before a scan switches to sorting the rest of the path.
int64_t heap_budget(int64_t rows, int64_t limit, ScheduleMode mode) {
  // A heap pop costs ~log2(R) comparisons, a sorted candidate a few radix passes: past about
  // R/4 pops, sorting the rest is the cheaper bet (a full path costs about R*K*4 either way).
  const int64_t lazy = std::max<int64_t>(64, rows / 4);
  if (mode == ScheduleMode::kCausal) return lazy;  // stops early in the common case
  return limit <= lazy ? lazy : 0;                 // visits all `limit` candidates
}

template <typename conf_t, typename sps_t>
void run_schedule(ScheduleArgs& args) {
  const int64_t rows = args.num_requests, k = args.max_draft;
  const conf_t* conf = args.confidence.const_data_ptr<conf_t>();
  const int64_t* max_len = args.max_len ? args.max_len->const_data_ptr<int64_t>() : nullptr;
  std::vector<double> a(static_cast<size_t>(rows * k));
  std::vector<int64_t> count(static_cast<size_t>(rows));
  // A row is K multiplications: thread only for very large batches.
  at::parallel_for(0, rows, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t cap = max_len ? sanitize_max_len(max_len[r], k) : k;
      count[r] = row_prefix_survival(conf + r * k, 1, k, cap, a.data() + r * k, 1);
    }
  });
  int64_t path_len = 0;
  for (int64_t r = 0; r < rows; ++r) path_len += count[r];
  const int64_t capacity = args.capacity ? args.capacity->const_data_ptr<int64_t>()[0] : 0;
  const int64_t limit =
      schedule_limit(path_len, rows, args.max_batch_tokens, args.mode, capacity);

  CpuPath path(a.data(), k, count.data(), rows, heap_budget(rows, limit, args.mode));
  const ScheduleOutcome out =
      schedule_scan(path, rows, args.sps.const_data_ptr<sps_t>(), limit, args.mode);

  int64_t* lengths = args.lengths.data_ptr<int64_t>();
  std::fill_n(lengths, rows, int64_t{0});
  // Path prefixes are per-request prefixes: l_r counts request r's admitted candidates.
  for (int64_t i = 0; i < out.admitted; ++i) ++lengths[path.row_of(i)];
  args.num_admitted.data_ptr<int64_t>()[0] = out.admitted;
  args.expected_tokens.data_ptr<double>()[0] = out.expected_tokens;
  args.throughput.data_ptr<double>()[0] = out.throughput;
}

ScheduleOutputs schedule_prefix_cpu(const at::Tensor& confidence, const at::Tensor& sps,
                                    const std::optional<at::Tensor>& max_len,
                                    const std::optional<at::Tensor>& capacity,
                                    std::optional<int64_t> max_batch_tokens, bool early_stop) {
  ScheduleArgs args = make_schedule_args("schedule_prefix", confidence, sps, max_len, capacity,
                                         max_batch_tokens, early_stop);
  AT_DISPATCH_FLOATING_TYPES(args.confidence.scalar_type(), "dspark_schedule_cpu", [&] {
    using conf_t = scalar_t;
    if (args.sps.scalar_type() == at::kDouble) {
      run_schedule<conf_t, double>(args);
    } else {
      run_schedule<conf_t, float>(args);
    }
  });
  return args.outputs();
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(dspark, CPU, m) { m.impl("schedule_prefix", &cpu::schedule_prefix_cpu); }

}  // namespace dspark
