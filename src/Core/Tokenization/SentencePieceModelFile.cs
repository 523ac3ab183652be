using System.Text;

namespace LoraPS.Tokenization;

/// <summary>
/// The parts of a SentencePiece <c>tokenizer.model</c> (a <c>ModelProto</c> protobuf) that LoraPS needs besides
/// the encoder itself: every piece with its type, the trainer's special ids and the normalizer flags.
/// Microsoft.ML.Tokenizers parses the same file but keeps piece types and these settings internal.
/// </summary>
internal sealed class SentencePieceModelFile
{
    public enum PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

    public enum ModelType { Unigram = 1, Bpe = 2, Word = 3, Char = 4 }

    public List<(string Piece, float Score, PieceType Type)> Pieces { get; } = [];

    public ModelType Model { get; private set; } = ModelType.Unigram;

    public bool ByteFallback { get; private set; }

    public int UnkId { get; private set; }

    public int BosId { get; private set; } = 1;

    public int EosId { get; private set; } = 2;

    public int PadId { get; private set; } = -1;

    public string NormalizerName { get; private set; } = "";

    public bool HasPrecompiledCharsmap { get; private set; }

    public bool AddDummyPrefix { get; private set; } = true;

    public bool RemoveExtraWhitespaces { get; private set; } = true;

    public bool EscapeWhitespaces { get; private set; } = true;

    public bool TreatWhitespaceAsSuffix { get; private set; }

    public static SentencePieceModelFile Parse(byte[] data, string path)
    {
        var file = new SentencePieceModelFile();
        try
        {
            var reader = new ProtoReader(data, 0, data.Length);
            while (reader.Next(out int field, out int wire))
            {
                switch (field)
                {
                    case 1 when wire == 2:
                        file.ReadPiece(reader.Message());
                        break;
                    case 2 when wire == 2:
                        file.ReadTrainerSpec(reader.Message());
                        break;
                    case 3 when wire == 2:
                        file.ReadNormalizerSpec(reader.Message());
                        break;
                    default:
                        reader.Skip(wire);
                        break;
                }
            }
        }
        catch (Exception ex) when (ex is IndexOutOfRangeException or ArgumentException or InvalidDataException or OverflowException)
        {
            throw new InvalidDataException($"'{path}' is not a SentencePiece model (protobuf ModelProto): {ex.Message}", ex);
        }
        if (file.Pieces.Count == 0)
        {
            throw new InvalidDataException($"'{path}' is not a SentencePiece model: it contains no pieces.");
        }
        return file;
    }

    private void ReadPiece(ProtoReader r)
    {
        string piece = "";
        float score = 0;
        var type = PieceType.Normal;
        while (r.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == 2: piece = r.String(); break;
                case 2 when wire == 5: score = r.Float(); break;
                case 3 when wire == 0: type = (PieceType)r.Varint(); break;
                default: r.Skip(wire); break;
            }
        }
        Pieces.Add((piece, score, type));
    }

    private void ReadTrainerSpec(ProtoReader r)
    {
        while (r.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 3 when wire == 0: Model = (ModelType)r.Varint(); break;
                case 24 when wire == 0: TreatWhitespaceAsSuffix = r.Varint() != 0; break;
                case 35 when wire == 0: ByteFallback = r.Varint() != 0; break;
                case 40 when wire == 0: UnkId = (int)r.Varint(); break;
                case 41 when wire == 0: BosId = (int)r.Varint(); break;
                case 42 when wire == 0: EosId = (int)r.Varint(); break;
                case 43 when wire == 0: PadId = (int)r.Varint(); break;
                default: r.Skip(wire); break;
            }
        }
    }

    private void ReadNormalizerSpec(ProtoReader r)
    {
        while (r.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == 2: NormalizerName = r.String(); break;
                case 2 when wire == 2: HasPrecompiledCharsmap = r.Message().Length > 0; break;
                case 3 when wire == 0: AddDummyPrefix = r.Varint() != 0; break;
                case 4 when wire == 0: RemoveExtraWhitespaces = r.Varint() != 0; break;
                case 5 when wire == 0: EscapeWhitespaces = r.Varint() != 0; break;
                default: r.Skip(wire); break;
            }
        }
    }

    /// <summary>Minimal protobuf wire-format reader (varint, 64-bit, length-delimited, 32-bit).</summary>
    private sealed class ProtoReader(byte[] data, int start, int end)
    {
        private readonly int _start = start;
        private int _pos = start;

        public int Length => end - _start;

        public bool Next(out int field, out int wire)
        {
            if (_pos >= end)
            {
                field = wire = 0;
                return false;
            }
            ulong key = Varint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            return true;
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                byte b = data[_pos++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }
            throw new InvalidDataException("malformed varint");
        }

        public ProtoReader Message()
        {
            int length = checked((int)Varint());
            if (length < 0 || _pos + length > end)
            {
                throw new InvalidDataException("truncated message");
            }
            var sub = new ProtoReader(data, _pos, _pos + length);
            _pos += length;
            return sub;
        }

        public string String()
        {
            ProtoReader m = Message();
            return Encoding.UTF8.GetString(data, m._pos, m.Length);
        }

        public float Float()
        {
            float f = BitConverter.ToSingle(data, _pos);
            _pos += 4;
            return f;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: _pos += 8; break;
                case 2: Message(); break;
                case 5: _pos += 4; break;
                default: throw new InvalidDataException($"unsupported wire type {wire}");
            }
            if (_pos > end)
            {
                throw new InvalidDataException("truncated field");
            }
        }
    }
}
