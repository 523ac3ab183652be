namespace LoraPS.Evaluation;

/// <summary>
/// lm-eval's per-document metrics and aggregations (<c>lm_eval/api/metrics.py</c>). Per-document values are
/// averaged (<c>mean</c>) with <c>mean_stderr</c> = sample standard deviation (ddof 1) / √n; corpus-level metrics
/// (F1, Matthews correlation, perplexity) get a bootstrap standard error; weighted perplexities get none.
/// </summary>
public static class Metrics
{
    /// <summary><c>np.argmax</c>: the first index of the largest value, so ties go to the lower index.</summary>
    public static int ArgMax(IReadOnlyList<double> values)
    {
        int best = 0;
        for (int i = 1; i < values.Count; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>Multiple choice <c>acc</c>: 1 when the most likely choice is the gold one.</summary>
    public static double Accuracy(IReadOnlyList<double> logLikelihoods, int gold) => ArgMax(logLikelihoods) == gold ? 1 : 0;

    /// <summary><c>acc_norm</c>: as <see cref="Accuracy"/> after dividing each log-likelihood by the choice's length
    /// in characters (the choice without the delimiter).</summary>
    public static double NormalizedAccuracy(IReadOnlyList<double> logLikelihoods, IReadOnlyList<string> choices, int gold) =>
        ArgMax(logLikelihoods.Select((ll, i) => ll / choices[i].Length).ToList()) == gold ? 1 : 0;

    /// <summary>
    /// TruthfulQA <c>mc2</c>: the probability mass on the true answers after normalising exp(ll) over all choices. The
    /// true answers are those before the first label 0 (lm-eval splits there). Shifting by the largest log-likelihood
    /// leaves the ratio unchanged and keeps very unlikely answers from underflowing to 0/0.
    /// </summary>
    public static double Mc2(IReadOnlyList<double> logLikelihoods, IReadOnlyList<int> labels)
    {
        int split = labels.ToList().IndexOf(0);
        if (split < 0) split = labels.Count;
        double max = logLikelihoods.Max();
        var p = logLikelihoods.Select(ll => Math.Exp(ll - max)).ToArray();
        return p.Take(split).Sum() / p.Sum();
    }

    public static double Mean(IReadOnlyList<double> values) => values.Count == 0 ? double.NaN : values.Average();

    /// <summary>lm-eval's <c>mean_stderr</c>: sample std (ddof 1) / √n; null (reported "N/A") for fewer than 2 values.</summary>
    public static double? MeanStderr(IReadOnlyList<double> values)
    {
        int n = values.Count;
        if (n < 2) return null;
        double mean = values.Average();
        double ss = values.Sum(v => (v - mean) * (v - mean));
        return Math.Sqrt(ss / (n - 1)) / Math.Sqrt(n);
    }

    /// <summary>sklearn's binary <c>f1_score</c> with positive class 1 (0 when there are no true or predicted positives).</summary>
    public static double F1(IReadOnlyList<(int Gold, int Prediction)> pairs)
    {
        int tp = 0, fp = 0, fn = 0;
        foreach (var (gold, prediction) in pairs)
        {
            if (prediction == 1) { if (gold == 1) tp++; else fp++; }
            else if (gold == 1) fn++;
        }
        return tp == 0 ? 0 : 2.0 * tp / (2.0 * tp + fp + fn);
    }

    /// <summary>sklearn's <c>matthews_corrcoef</c> for any number of classes (0 when undefined).</summary>
    public static double MatthewsCorrelation(IReadOnlyList<(int Gold, int Prediction)> pairs)
    {
        // The multiclass form (Gorodkin 2004); for two classes it is (tp·tn − fp·fn)/√(…).
        var gold = new Dictionary<int, double>();
        var predicted = new Dictionary<int, double>();
        double n = pairs.Count, correct = 0;
        foreach (var (g, p) in pairs)
        {
            gold[g] = gold.GetValueOrDefault(g) + 1;
            predicted[p] = predicted.GetValueOrDefault(p) + 1;
            if (g == p) correct++;
        }
        double sumPt = 0, sumP2 = 0, sumT2 = 0;
        foreach (var (k, t) in gold) sumPt += predicted.GetValueOrDefault(k) * t;
        foreach (var t in gold.Values) sumT2 += t * t;
        foreach (var p in predicted.Values) sumP2 += p * p;
        double denominator = Math.Sqrt((n * n - sumP2) * (n * n - sumT2));
        return denominator == 0 ? 0 : (correct * n - sumPt) / denominator;
    }

    /// <summary><c>perplexity</c> aggregation: exp(−mean log-likelihood).</summary>
    public static double Perplexity(IReadOnlyList<double> logLikelihoods) => Math.Exp(-logLikelihoods.Average());

    /// <summary><c>weighted_perplexity</c>: exp(−Σ ll / Σ weight), the weight being words or bytes.</summary>
    public static double WeightedPerplexity(IReadOnlyList<(double LogLikelihood, double Weight)> items) =>
        Math.Exp(-items.Sum(i => i.LogLikelihood) / items.Sum(i => i.Weight));

    /// <summary><c>bits_per_byte</c>: −Σ ll / Σ bytes / ln 2.</summary>
    public static double BitsPerByte(IReadOnlyList<(double LogLikelihood, double Weight)> items) =>
        -items.Sum(i => i.LogLikelihood) / items.Sum(i => i.Weight) / Math.Log(2);

    /// <summary>
    /// lm-eval's <c>bootstrap_stderr</c>: the sample std of <paramref name="metric"/> over <paramref name="iterations"/>
    /// resamples with replacement. The generator is seeded, so the figure is reproducible (its digits differ from
    /// Python's, whose generator differs).
    /// </summary>
    public static double? BootstrapStderr<T>(IReadOnlyList<T> items, Func<IReadOnlyList<T>, double> metric, int iterations, int seed = 0)
    {
        if (items.Count < 2 || iterations < 2) return null;
        var random = new Random(seed);
        var sample = new T[items.Count];
        var values = new double[iterations];
        for (int it = 0; it < iterations; it++)
        {
            for (int i = 0; i < sample.Length; i++) sample[i] = items[random.Next(items.Count)];
            values[it] = metric(sample);
        }
        return MeanStderr(values) is double se ? se * Math.Sqrt(iterations) : null;
    }

    /// <summary>The words of a document as lm-eval counts them for <c>word_perplexity</c>: <c>re.split(r"\s+", doc)</c>.</summary>
    public static int WordCount(string text) => System.Text.RegularExpressions.Regex.Split(text, @"\s+").Length;
}
