namespace LoraPS.Evaluation;

/// <summary>
/// lm-eval's <c>loglikelihood</c> request: how likely is <paramref name="Continuation"/> after <paramref name="Context"/>?
/// An empty context means "from the prefix token alone" (BOS, or EOS when the tokenizer has no BOS).
/// </summary>
public sealed record LoglikelihoodRequest(string Context, string Continuation);

/// <summary>
/// The answer to a <see cref="LoglikelihoodRequest"/>: the summed log-probability of the continuation tokens, whether
/// greedy decoding would have produced exactly those tokens, and how many tokens the continuation has.
/// </summary>
public readonly record struct LoglikelihoodResult(double LogLikelihood, bool IsGreedy, int ContinuationTokens);

/// <summary>
/// lm-eval's <c>generate_until</c> request: greedy continuation of <paramref name="Context"/>, cut at the first of the
/// <paramref name="Until"/> strings, at most <paramref name="MaxGenTokens"/> new tokens.
/// </summary>
public sealed record GenerateUntilRequest(string Context, IReadOnlyList<string> Until, int MaxGenTokens = 256);

/// <summary>
/// What a language-model evaluator needs from a model. <see cref="CausalLmScorer"/> is the real one; tests use fakes to
/// check metric arithmetic against hand-computed log-likelihoods.
/// </summary>
public interface ILanguageModelScorer
{
    /// <summary>Scores every request; the results are in request order. Cancelling stops between batches and
    /// returns the results of a prefix of the requests (possibly none).</summary>
    IReadOnlyList<LoglikelihoodResult> Loglikelihood(IReadOnlyList<LoglikelihoodRequest> requests, CancellationToken cancellationToken = default);

    /// <summary>lm-eval's <c>loglikelihood_rolling</c>: the log-likelihood of each whole text (from the prefix token),
    /// in disjoint windows of the model's context length. Cancelling returns a prefix.</summary>
    IReadOnlyList<RollingLoglikelihood> LoglikelihoodRolling(IReadOnlyList<string> texts, CancellationToken cancellationToken = default);

    /// <summary>Greedy generations, in request order. Cancelling returns a prefix.</summary>
    IReadOnlyList<string> GenerateUntil(IReadOnlyList<GenerateUntilRequest> requests, CancellationToken cancellationToken = default);

    /// <summary>Requests so far whose context was left-truncated to fit the model.</summary>
    int TruncatedRequests { get; }
}

/// <summary>The log-likelihood of a whole text and how many tokens it spans.</summary>
public readonly record struct RollingLoglikelihood(double LogLikelihood, int Tokens);
