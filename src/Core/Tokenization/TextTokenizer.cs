namespace LoraPS.Tokenization;

/// <summary>
/// Text ↔ token ids for a model folder, matching what Hugging Face transformers' <c>AutoTokenizer</c> produces for
/// the same files: <c>tokenizer.json</c> (byte-level BPE as GPT-2/Qwen/Llama 3, SentencePiece-style BPE with byte
/// fallback as Llama/Mistral, WordPiece as BERT), else a SentencePiece <c>tokenizer.model</c>, else a BERT
/// <c>vocab.txt</c>. Special tokens come from tokenizer_config.json, special_tokens_map.json,
/// generation_config.json and config.json.
/// </summary>
/// <remarks>
/// The core algorithms (BPE merges, WordPiece matching, SentencePiece encoding, BERT basic tokenization) are
/// Microsoft.ML.Tokenizers'; the Hugging Face pipeline around them — added tokens, normalizers, pre-tokenizers,
/// post-processor templates, decoders — is implemented in this folder, because ML.Tokenizers has no tokenizer.json
/// reader. A loaded tokenizer does not change.
/// </remarks>
public sealed class TextTokenizer
{
    private readonly TokenizerParts _parts;

    private TextTokenizer(TokenizerParts parts) => _parts = parts;

    /// <summary>
    /// Loads the tokenizer in <paramref name="modelDirectory"/>: tokenizer.json if present, else tokenizer.model
    /// (SentencePiece), else vocab.txt (WordPiece).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">The folder has none of the three files.</exception>
    /// <exception cref="InvalidDataException">A tokenizer or config file is malformed.</exception>
    /// <exception cref="NotSupportedException">The file uses a tokenizer feature LoraPS does not implement.</exception>
    public static TextTokenizer Load(string modelDirectory) => new(TokenizerLoader.Load(modelDirectory));

    /// <summary>What was loaded, e.g. "SentencePiece BPE (tokenizer.model)", "Byte-level BPE (tokenizer.json)", "WordPiece (vocab.txt)".</summary>
    public string Kind => _parts.Kind;

    /// <summary>The file the tokenizer was read from.</summary>
    public string SourcePath => _parts.SourcePath;

    /// <summary>
    /// Number of distinct token ids, added tokens included (transformers' <c>len(tokenizer)</c>). A model's
    /// embedding may be larger (config.json vocab_size); ids without a token decode to nothing.
    /// </summary>
    public int VocabSize => _parts.IdToToken.Count;

    public int? BosTokenId => _parts.Specials.Bos;

    /// <summary>The EOS token first (the one <see cref="AddEosToken"/> appends), then any further stop ids from generation_config.json.</summary>
    public IReadOnlyList<int> EosTokenIds => _parts.Specials.Eos;

    /// <summary>The padding token, when the tokenizer has one (Llama has none; callers often pad with EOS).</summary>
    public int? PadTokenId => _parts.Specials.Pad;

    public int? UnkTokenId => _parts.Specials.Unk;

    /// <summary>Whether <see cref="Encode"/> starts a text with the BOS token (Llama: yes; GPT-2, Qwen2, BERT: no).</summary>
    public bool AddBosToken => _parts.Template.StartsWith(BosTokenId);

    /// <summary>Whether <see cref="Encode"/> ends a text with the EOS token.</summary>
    public bool AddEosToken => EosTokenIds.Count > 0 && _parts.Template.EndsWith(EosTokenIds[0]);

    /// <summary>Ids that <see cref="Decode"/> drops when asked to skip special tokens.</summary>
    public IReadOnlySet<int> SpecialTokenIds => _parts.SpecialIds;

    /// <summary>
    /// Encodes one text. With <paramref name="addSpecialTokens"/> the tokenizer's template is applied
    /// (Llama: BOS prefix when add_bos_token; BERT: [CLS] … [SEP]). Special tokens written in the text
    /// ("&lt;s&gt;", "&lt;|im_end|&gt;") are recognised as single tokens.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _parts.Template.Apply(EncodeWithoutTemplate(text), null, addSpecialTokens).Ids;
    }

    /// <summary>
    /// Encodes a text pair (sentence-pair classification, QA) with token type ids: BERT
    /// <c>[CLS] a [SEP] b [SEP]</c> with types 0… then 1…; RoBERTa <c>&lt;s&gt; a &lt;/s&gt;&lt;/s&gt; b &lt;/s&gt;</c> all 0.
    /// </summary>
    public EncodedPair EncodePair(string first, string second, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        return _parts.Template.Apply(EncodeWithoutTemplate(first), EncodeWithoutTemplate(second), addSpecialTokens);
    }

    /// <summary>
    /// Lays out already-encoded ids with the tokenizer's special tokens and token type ids — transformers'
    /// <c>build_inputs_with_special_tokens</c> — e.g. after truncating them to fit a maximum length.
    /// </summary>
    public EncodedPair AddSpecialTokens(IReadOnlyList<int> first, IReadOnlyList<int>? second = null)
    {
        ArgumentNullException.ThrowIfNull(first);
        return _parts.Template.Apply(first, second, addSpecialTokens: true);
    }

    /// <summary>Turns ids back into text; ids that are not in the vocabulary are ignored, as in transformers.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>();
        foreach (int id in ids)
        {
            if (skipSpecialTokens && _parts.SpecialIds.Contains(id))
            {
                continue;
            }
            if (_parts.IdToToken.TryGetValue(id, out string? token))
            {
                tokens.Add(token);
            }
        }
        string text = _parts.Decoder?.Decode(tokens) ?? string.Join(' ', tokens);
        return _parts.CleanUpTokenizationSpaces ? WordPieceDecoder.CleanUpTokenizationSpaces(text) : text;
    }

    /// <summary>The token string of an id as written in the vocabulary ("▁Hello", "Ġworld", "##ing"), or null.</summary>
    public string? IdToToken(int id) => _parts.IdToToken.GetValueOrDefault(id);

    /// <summary>The id of a vocabulary or added token string, or null.</summary>
    public int? TokenToId(string token) =>
        _parts.TokenToId.TryGetValue(token ?? throw new ArgumentNullException(nameof(token)), out int id) ? id : null;

    /// <summary>The token strings <see cref="Encode"/> would produce (for inspection and debugging).</summary>
    public IReadOnlyList<string> Tokenize(string text, bool addSpecialTokens = false) =>
        Encode(text, addSpecialTokens).Select(id => _parts.IdToToken.GetValueOrDefault(id, "")).ToList();

    public override string ToString() => $"{Kind}, {VocabSize} tokens";

    private List<int> EncodeWithoutTemplate(string text)
    {
        var ids = new List<int>();
        foreach (TextSegment segment in _parts.Splitter.Split(text, _parts.Normalizer))
        {
            if (segment.TokenId is int id)
            {
                ids.Add(id);
            }
            else if (segment.Text.Length > 0)
            {
                if (_parts.PreTokenizer is null)
                {
                    _parts.Model.Tokenize(new TextPiece(segment.Text, segment.AtStart), ids);
                    continue;
                }
                foreach (TextPiece word in _parts.PreTokenizer.PreTokenize(segment.Text, segment.AtStart))
                {
                    _parts.Model.Tokenize(word, ids);
                }
            }
        }
        return ids;
    }
}
