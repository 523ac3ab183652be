using LoraPS.Tokenization;

namespace LoraPS.Data;

/// <summary>
/// Tokenizes examples exactly as LitGPT's <c>SFTDataset</c> does:
/// <code>
/// prompt   = tokenizer.encode(prompt_style.apply(example))            BOS as the tokenizer adds it, no EOS
/// response = tokenizer.encode(output, bos=False, eos=True)            no BOS, EOS appended
/// input_ids = (prompt + response)[:max_seq_length]
/// labels    = input_ids, with labels[:len(prompt)] = −100 when mask_prompt
/// </code>
/// The prompt and response are encoded separately (so a SentencePiece response starts with its own "▁"). Plain
/// text is an instruction with an empty prompt: BOS, then the text and EOS. Classification examples are encoded
/// with the tokenizer's special tokens ([CLS] a [SEP] b [SEP]) and truncated as transformers' "longest_first".
/// </summary>
public sealed class ExampleTokenizer
{
    public ExampleTokenizer(TextTokenizer tokenizer, TokenizationOptions? options = null)
    {
        Tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        Options = options ?? new TokenizationOptions();
        ArgumentNullException.ThrowIfNull(Options.PromptStyle, nameof(options));
        if (Options.MaxSeqLength is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), Options.MaxSeqLength, "MaxSeqLength must be at least 1 (or null for no limit).");
        }
    }

    public TextTokenizer Tokenizer { get; }

    public TokenizationOptions Options { get; }

    /// <summary>Tokenizes every example in order.</summary>
    public TokenizedDataset TokenizeAll(IEnumerable<DatasetExample> examples, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(examples);
        var result = new List<TokenizedExample>();
        foreach (DatasetExample example in examples)
        {
            cancellationToken.ThrowIfCancellationRequested();
            result.Add(Tokenize(example));
        }
        return new TokenizedDataset(result, Options.IgnoreIndex);
    }

    public TokenizedExample Tokenize(DatasetExample example) => example switch
    {
        InstructionExample e => TokenizeSupervised(Options.PromptStyle.Apply(e), e.Output),
        TextExample e => TokenizeSupervised("", e.Text),
        ClassificationExample e => TokenizeClassification(e),
        null => throw new ArgumentNullException(nameof(example)),
        _ => throw new NotSupportedException($"Cannot tokenize a {example.GetType().Name}."),
    };

    private TokenizedExample TokenizeSupervised(string prompt, string response)
    {
        List<int> encodedPrompt = EncodeLikeLitGpt(prompt, bos: null, eos: false);
        List<int> encodedResponse = EncodeLikeLitGpt(response, bos: false, eos: true);
        int total = encodedPrompt.Count + encodedResponse.Count;
        int length = Options.MaxSeqLength is int max ? Math.Min(total, max) : total;
        // LitGPT truncates each part to max_seq_length before concatenating, so the masked length is capped too.
        int promptLength = Math.Min(encodedPrompt.Count, length);

        var inputIds = new long[length];
        for (int i = 0; i < length; i++)
        {
            inputIds[i] = i < encodedPrompt.Count ? encodedPrompt[i] : encodedResponse[i - encodedPrompt.Count];
        }
        long[] labels = (long[])inputIds.Clone();
        if (Options.MaskPrompt)
        {
            Array.Fill(labels, Options.IgnoreIndex, 0, promptLength);
        }
        return new TokenizedExample(inputIds, labels, promptLength) { Truncated = length < total };
    }

    /// <summary>
    /// LitGPT's <c>Tokenizer.encode</c>: the tokenizer's own encoding (with its template), then BOS forced on or
    /// off (null: as the tokenizer's add_bos_token says), and EOS appended when asked — or removed when not asked
    /// and the encoding ends with it. Neither is ever doubled.
    /// </summary>
    internal List<int> EncodeLikeLitGpt(string text, bool? bos, bool eos)
    {
        var tokens = new List<int>(Tokenizer.Encode(text, addSpecialTokens: true));
        int? bosId = Tokenizer.BosTokenId;
        if (bos ?? Tokenizer.AddBosToken)
        {
            if (bosId is not int b)
            {
                throw new InvalidOperationException($"The tokenizer {Tokenizer.SourcePath} has no BOS token to start a prompt with.");
            }
            if (tokens.Count == 0 || tokens[0] != b)
            {
                tokens.Insert(0, b);
            }
        }
        else if (tokens.Count > 0 && bosId is int b && tokens[0] == b)
        {
            tokens.RemoveAt(0);
        }

        if (Tokenizer.EosTokenIds.Count == 0)
        {
            throw new InvalidOperationException(
                $"The tokenizer {Tokenizer.SourcePath} has no EOS token; fine-tuning ends every response with EOS so the model learns to stop.");
        }
        int eosId = Tokenizer.EosTokenIds[0];
        if (eos && (tokens.Count == 0 || tokens[^1] != eosId))
        {
            tokens.Add(eosId);
        }
        else if (!eos && tokens.Count > 0 && tokens[^1] == eosId)
        {
            tokens.RemoveAt(tokens.Count - 1);
        }
        return tokens;
    }

    private TokenizedExample TokenizeClassification(ClassificationExample example)
    {
        var first = new List<int>(Tokenizer.Encode(example.Text, addSpecialTokens: false));
        List<int>? second = example.TextPair is null ? null : new List<int>(Tokenizer.Encode(example.TextPair, addSpecialTokens: false));
        int specials = Tokenizer.AddSpecialTokens([], second is null ? null : []).Ids.Count;
        int contentLength = first.Count + (second?.Count ?? 0);
        bool truncated = false;
        if (Options.MaxSeqLength is int max && contentLength + specials > max)
        {
            int budget = max - specials;
            if (budget < (second is null ? 1 : 2))
            {
                throw new ArgumentOutOfRangeException(nameof(example),
                    $"MaxSeqLength {max} leaves no room for text next to the tokenizer's {specials} special tokens.");
            }
            (int keepFirst, int keepSecond) = second is null ? (budget, 0) : LongestFirst(first.Count, second.Count, budget);
            first.RemoveRange(keepFirst, first.Count - keepFirst);
            second?.RemoveRange(keepSecond, second.Count - keepSecond);
            truncated = true;
        }
        EncodedPair encoded = Tokenizer.AddSpecialTokens(first, second);
        long[] ids = encoded.Ids.Select(i => (long)i).ToArray();
        return new TokenizedExample(ids, [], ids.Length)
        {
            ClassLabel = example.Label,
            TokenTypeIds = encoded.TokenTypeIds.Select(t => (long)t).ToArray(),
            Truncated = truncated,
        };
    }

    /// <summary>
    /// Hugging Face tokenizers' "longest_first" for a pair that must fit <paramref name="budget"/> tokens: cut only the
    /// longer text if that suffices, otherwise give each half (the longer one gets the odd token).
    /// </summary>
    internal static (int First, int Second) LongestFirst(int first, int second, int budget)
    {
        bool swap = first > second;
        (int shorter, int longer) = swap ? (second, first) : (first, second);
        longer = shorter > budget ? shorter : Math.Max(shorter, budget - shorter);
        if (shorter + longer > budget)
        {
            shorter = budget / 2;
            longer = shorter + budget % 2;
        }
        // Never lengthen: a text shorter than its share keeps its length.
        (int a, int b) = swap ? (longer, shorter) : (shorter, longer);
        return (Math.Min(a, first), Math.Min(b, second));
    }
}
