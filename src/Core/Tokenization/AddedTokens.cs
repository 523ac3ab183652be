using System.Text;

namespace LoraPS.Tokenization;

/// <summary>
/// A token matched as a whole in raw text before the model sees it (tokenizer.json "added_tokens",
/// tokenizer_config.json "added_tokens_decoder", special tokens such as &lt;s&gt; or [CLS]).
/// </summary>
/// <param name="Id">The token id.</param>
/// <param name="Content">The exact text of the token.</param>
/// <param name="Special">Special tokens are dropped by <c>Decode(skipSpecialTokens: true)</c>.</param>
/// <param name="SingleWord">Only matches when not inside a word.</param>
/// <param name="LStrip">Also swallows the whitespace before it.</param>
/// <param name="RStrip">Also swallows the whitespace after it.</param>
/// <param name="Normalized">Matched in normalized text (e.g. after lowercasing) instead of raw text.</param>
internal sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord = false,
    bool LStrip = false, bool RStrip = false, bool Normalized = false);

/// <summary>A run of text for the normalizer/model (<see cref="TokenId"/> null) or one added token.</summary>
internal readonly record struct TextSegment(string Text, int? TokenId, bool AtStart);

/// <summary>
/// Cuts text around added tokens like tokenizers' <c>AddedVocabulary::extract_and_normalize</c>: tokens with
/// normalized=false are found in the raw text (leftmost, then longest match), the text between them is
/// normalized, and tokens with normalized=true are then found in that normalized text.
/// </summary>
internal sealed class AddedTokenSplitter
{
    private readonly Matcher _raw;
    private readonly Matcher _normalized;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens, TextNormalizer? normalizer)
    {
        var all = tokens.ToList();
        _raw = new Matcher(all.Where(t => !t.Normalized).Select(t => (t.Content, t)));
        _normalized = new Matcher(all.Where(t => t.Normalized)
            .Select(t => (normalizer?.Normalize(t.Content) ?? t.Content, t)));
    }

    /// <summary>Raw segments are returned normalized.</summary>
    public List<TextSegment> Split(string text, TextNormalizer? normalizer)
    {
        var result = new List<TextSegment>();
        foreach ((int? id, int start, int end) in _raw.FindMatches(text))
        {
            if (id is not null)
            {
                result.Add(new TextSegment(text[start..end], id, start == 0));
                continue;
            }
            string normalized = normalizer?.Normalize(text[start..end]) ?? text[start..end];
            foreach ((int? nid, int nstart, int nend) in _normalized.FindMatches(normalized))
            {
                result.Add(new TextSegment(normalized[nstart..nend], nid, start == 0 && nstart == 0));
            }
        }
        return result;
    }

    private sealed class Matcher
    {
        private readonly Dictionary<char, List<(string Pattern, AddedToken Token)>> _byFirstChar = [];

        public Matcher(IEnumerable<(string Pattern, AddedToken Token)> patterns)
        {
            foreach (var p in patterns.Where(p => p.Pattern.Length > 0))
            {
                if (!_byFirstChar.TryGetValue(p.Pattern[0], out var list))
                {
                    _byFirstChar[p.Pattern[0]] = list = [];
                }
                list.Add(p);
            }
            foreach (var list in _byFirstChar.Values)
            {
                list.Sort((a, b) => b.Pattern.Length.CompareTo(a.Pattern.Length));
            }
        }

        /// <summary>Splits covering the whole sentence: (token id or null, start, end).</summary>
        public List<(int? Id, int Start, int End)> FindMatches(string sentence)
        {
            var splits = new List<(int?, int, int)>();
            int startOffset = 0;
            int i = 0;
            while (_byFirstChar.Count > 0 && i < sentence.Length)
            {
                if (!TryMatchAt(sentence, i, out string pattern, out AddedToken token))
                {
                    i++;
                    continue;
                }
                int start = i;
                int stop = i + pattern.Length;
                i = stop;   // matches never overlap, even when the one found is then discarded
                if (token.SingleWord && (EndsWithWordChar(sentence, start) || StartsWithWordChar(sentence, stop)))
                {
                    continue;
                }
                if (token.LStrip)
                {
                    while (start > startOffset && char.IsWhiteSpace(sentence[start - 1]))
                    {
                        start--;
                    }
                }
                if (token.RStrip)
                {
                    while (stop < sentence.Length && char.IsWhiteSpace(sentence[stop]))
                    {
                        stop++;
                    }
                    i = stop;
                }
                if (startOffset < start)
                {
                    splits.Add((null, startOffset, start));
                }
                splits.Add((token.Id, start, stop));
                startOffset = stop;
            }
            if (startOffset < sentence.Length || splits.Count == 0)
            {
                splits.Add((null, startOffset, sentence.Length));
            }
            return splits;
        }

        private bool TryMatchAt(string sentence, int index, out string pattern, out AddedToken token)
        {
            if (_byFirstChar.TryGetValue(sentence[index], out var candidates))
            {
                foreach (var c in candidates)
                {
                    if (index + c.Pattern.Length <= sentence.Length &&
                        string.CompareOrdinal(sentence, index, c.Pattern, 0, c.Pattern.Length) == 0)
                    {
                        (pattern, token) = c;
                        return true;
                    }
                }
            }
            (pattern, token) = (string.Empty, null!);
            return false;
        }

        private static bool EndsWithWordChar(string s, int end) =>
            end > 0 && Rune.TryGetRuneAt(s, char.IsLowSurrogate(s[end - 1]) && end >= 2 ? end - 2 : end - 1, out Rune r) && IsWordChar(r);

        private static bool StartsWithWordChar(string s, int start) =>
            start < s.Length && Rune.TryGetRuneAt(s, start, out Rune r) && IsWordChar(r);

        private static bool IsWordChar(Rune r) => Rune.IsLetterOrDigit(r) || r.Value == '_';
    }
}
